"""The balance: finance settings and ledger types, and the mutations that move money."""
