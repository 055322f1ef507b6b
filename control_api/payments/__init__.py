"""Card payments through a gateway: our database only ever sees tokens (rule M1)."""
