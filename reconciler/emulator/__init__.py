"""A faithful QuantConnect API v2 emulator on loopback (DESIGN §8).

Written from the API's public contract, not from the client's code: it imports nothing
else of the reconciler's, so it catches client bugs instead of sharing them.

    with Emulator(compile_delay=0.0) as emulator:
        emulator.add_project(101)
        emulator.add_node("LN-" + "a" * 32)
        compile_id = emulator.add_compile(101)
        ...  # point a client at emulator.url with emulator.user_id / emulator.token
"""

from reconciler.emulator.seed import load_seed_file
from reconciler.emulator.server import AUTH_WINDOW, Emulator, parse_fault
from reconciler.emulator.spec import Rejected

__all__ = ["AUTH_WINDOW", "Emulator", "Rejected", "load_seed_file", "parse_fault"]
