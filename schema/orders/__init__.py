"""Voucher orders: their types, the orders list (queries) and placing, cancelling, revealing (mutations)."""
