// TEST-MODE TOKENISER (issue 13, rule M1). The payment gateway this install uses is the TEST
// gateway (control_api/payments/test_gateway.py), which only knows test tokens. Payment
// processors' test modes let people type well-known test card NUMBERS and turn them into those
// tokens in the browser, with the processor's own JavaScript, so that card data never reaches our
// server. This module plays that part for the test gateway and nothing else.
//
// With a real processor, REPLACE THIS MODULE with the processor's JavaScript (its hosted card
// fields and its tokenise call): it must keep the same shape, tokenise(card) -> { token, brand,
// last4 }, and book.js stays as it is. Never send a card number to /v1: the API refuses anything
// that looks like one (rule M1).

// The test numbers processors publish, mapped to the test gateway's tokens.
const TEST_CARDS = {
  "4242424242424242": { token: "tok_visa", brand: "visa" },
  "5555555555554444": { token: "tok_mastercard", brand: "mastercard" },
  "378282246310005": { token: "tok_amex", brand: "amex" },
  "4000000000000002": { token: "tok_chargeDeclined", brand: "visa" },
  "4000000000009995": { token: "tok_chargeDeclinedInsufficientFunds", brand: "visa" },
  "4000000000000069": { token: "tok_chargeDeclinedExpiredCard", brand: "visa" },
  "4000000000000119": { token: "tok_chargeDeclinedProcessingError", brand: "visa" },
};

export const TEST_MODE = true;
export const EXAMPLE_NUMBER = "4242 4242 4242 4242";

/** A field the person must correct: `field` is "number", "expiry" or "cvc"; `code` names the problem. */
export class CardError extends Error {
  constructor(field, code) {
    super(`${field}: ${code}`);
    this.field = field;
    this.code = code;
  }
}

export const digits = (value) => String(value || "").replace(/[\s-]/g, "");

function luhn(number) {
  let sum = 0;
  for (let i = 0; i < number.length; i += 1) {
    let d = Number(number[number.length - 1 - i]);
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

export function brandOf(number) {
  if (/^3[47]/.test(number)) return "amex";
  if (/^(5[1-5]|2[2-7])/.test(number)) return "mastercard";
  if (/^4/.test(number)) return "visa";
  return null;
}

/** "4242424242424242" -> "4242 4242 4242 4242" (American Express: 4-6-5), as people read card numbers. */
export function formatNumber(value) {
  const d = digits(value).replace(/\D/g, "").slice(0, 19);
  const groups = brandOf(d) === "amex" ? [4, 6, 5] : [4, 4, 4, 4, 3];
  const out = [];
  let at = 0;
  for (const size of groups) {
    if (at >= d.length) break;
    out.push(d.slice(at, at + size));
    at += size;
  }
  return out.join(" ");
}

/** "MM/YY" (or "MM/YYYY"): not in the past, checked against the browser's month. */
export function checkExpiry(value, today = new Date()) {
  const m = String(value || "").trim().match(/^(\d{1,2})\s*\/\s*(\d{2}|\d{4})$/);
  if (!m) throw new CardError("expiry", "format");
  const month = Number(m[1]);
  let year = Number(m[2]);
  if (year < 100) year += 2000;
  if (month < 1 || month > 12) throw new CardError("expiry", "format");
  if (year * 12 + month < today.getFullYear() * 12 + today.getMonth() + 1) throw new CardError("expiry", "past");
  return { month, year };
}

/**
 * Validate the card the way a processor's fields do and return its test token.
 * Throws CardError(field, code) for the person to correct.
 */
export async function tokenise({ number, expiry, cvc }) {
  const n = digits(number);
  if (!/^\d{13,19}$/.test(n)) throw new CardError("number", "format");
  if (!luhn(n)) throw new CardError("number", "invalid");
  const card = TEST_CARDS[n];
  if (!card) throw new CardError("number", "notTestCard");  // test mode: only the published test numbers
  checkExpiry(expiry);
  const wanted = card.brand === "amex" ? 4 : 3;
  if (!new RegExp(`^\\d{${wanted}}$`).test(String(cvc || "").trim())) throw new CardError("cvc", card.brand === "amex" ? "amex" : "format");
  return { token: card.token, brand: card.brand, last4: n.slice(-4) };
}
