"""Run the gateway: ``python -m services.gateway`` (pre-forked eventlet WSGI processes)."""
import sys

from services.gateway.server import main

if __name__ == "__main__":
    sys.exit(main())
