// The two-step sign-in key as a QR code (issue 13): authenticator apps scan it from the screen,
// the way every consumer service offers it; the link and the typed key stay for phones.
import qrcode from "../vendor/qrcode-generator/qrcode.js";

/** An <img> of `text` as a QR code (error correction M), drawn in the browser: the secret never
 * leaves the page for another service. */
export function qrImage(text, alt) {
  const code = qrcode(0, "M");
  code.addData(text);
  code.make();
  const img = document.createElement("img");
  img.src = code.createDataURL(4, 4);
  img.alt = alt;
  img.className = "qr";
  img.width = img.height = (code.getModuleCount() + 8) * 4;
  return img;
}
