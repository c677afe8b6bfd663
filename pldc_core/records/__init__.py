"""Pseudo-label records: schema, row building (torch), store/reader (no torch), recorder, commands.

Import the submodule you need; reading (``store``) and error classification (``errors``) load no torch.
"""
