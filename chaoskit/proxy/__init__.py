"""chaoskit's embedded fault proxy: a drop-in Toxiproxy 2.12 server in pure asyncio.

Any Toxiproxy client works against it unchanged; inputs that hang or crash the real server get
a 400 instead. Extras, all opt-in: ``initial_toxics`` on a new proxy (in ``POST /proxies``,
``/populate`` or the config file) applied before it accepts a connection; a lease on a proxy's
faults (``POST /proxies/{name}/lease``) that removes them unless renewed; ``--seed`` that really
makes toxicity and jitter reproducible. See ``docs/proxy.md``.
"""

from ._api import VERSION
from ._server import ProxyServer, is_loopback, run_in_thread

__all__ = ["VERSION", "ProxyServer", "is_loopback", "run_in_thread"]
