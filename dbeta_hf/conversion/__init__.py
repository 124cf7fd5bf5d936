"""Conversion of the official D-BETA checkpoint (the official key map lives here) and the input-convention
diagnostic."""
