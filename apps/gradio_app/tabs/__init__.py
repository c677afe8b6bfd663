"""One module per tab of the app: its layout (``layout``), its callbacks, and their wiring (``wire``)."""
