"""``python -m relaystore``: the ``relaystore`` command (needs the ``cli`` extra)."""

from relaystore.cli import main

if __name__ == "__main__":
    main()
