#!/usr/bin/env bash
# Refresh the browser libraries the pages use, from the npm registry, into control_api/static/vendor
# (committed, so neither README command needs npm or a bundler). Each keeps its LICENSE and version.
set -euo pipefail
cd "$(dirname "$0")/.."
VENDOR=control_api/static/vendor
I18NEXT=27.2.10
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "i18next@$I18NEXT" >/dev/null && tar xzf "i18next-$I18NEXT.tgz")
mkdir -p "$VENDOR/i18next"
cp "$work/package/dist/esm/i18next.js" "$work/package/LICENSE" "$VENDOR/i18next/"
echo "i18next $I18NEXT (npm)" > "$VENDOR/i18next/VERSION"
echo "vendored: i18next $I18NEXT"
