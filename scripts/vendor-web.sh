#!/usr/bin/env bash
# Refresh the browser libraries the pages use, from the npm registry, into control_api/static/vendor
# (committed, so neither README command needs npm or a bundler). Each keeps its LICENSE and version.
set -euo pipefail
cd "$(dirname "$0")/.."
VENDOR=control_api/static/vendor
I18NEXT=27.2.10
QRCODE=2.0.4  # the two-step sign-in key as a QR code (account page)
SWAGGER_UI=5.35.0  # /v1/docs (control_api/docs_routes.py): Swagger UI 5 reads OpenAPI 3.1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# fetch <name> <version>: unpack the npm package into $work/<name>/package
fetch() {
  mkdir -p "$work/$1"
  (cd "$work/$1" && npm pack --silent "$1@$2" >/dev/null && tar xzf "$1-$2.tgz")
}

fetch i18next "$I18NEXT"
mkdir -p "$VENDOR/i18next"
cp "$work/i18next/package/dist/esm/i18next.js" "$work/i18next/package/LICENSE" "$VENDOR/i18next/"
echo "i18next $I18NEXT (npm)" > "$VENDOR/i18next/VERSION"
echo "vendored: i18next $I18NEXT"

fetch swagger-ui-dist "$SWAGGER_UI"
mkdir -p "$VENDOR/swagger-ui"
# Apache-2.0: its LICENSE and NOTICE, and the licences of what the bundle includes, travel with it.
for file in swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css LICENSE NOTICE; do
  cp "$work/swagger-ui-dist/package/$file" "$VENDOR/swagger-ui/"
done
echo "swagger-ui-dist $SWAGGER_UI (npm)" > "$VENDOR/swagger-ui/VERSION"
echo "vendored: swagger-ui-dist $SWAGGER_UI"

fetch qrcode-generator "$QRCODE"
mkdir -p "$VENDOR/qrcode-generator"
cp "$work/qrcode-generator/package/dist/qrcode.mjs" "$VENDOR/qrcode-generator/qrcode.js"  # an ES module; .js for its MIME type
# MIT: the package ships its licence in the source header; the full text travels beside it.
sed -n '1,16p' "$work/qrcode-generator/package/dist/qrcode.mjs" > "$VENDOR/qrcode-generator/LICENSE"
echo "qrcode-generator $QRCODE (npm)" > "$VENDOR/qrcode-generator/VERSION"
echo "vendored: qrcode-generator $QRCODE"
