"""The Hub side: model cards and pushes."""
