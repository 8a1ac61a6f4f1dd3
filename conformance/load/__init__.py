"""Load mode: many simulated users of a target submit PEC messages at once, driven by Locust master and
worker processes; every message is followed to its acceptance receipt, its envelope at the counterpart
and its delivery receipts, and the run ends in a load report.

Process layout (all on loopback for the built-in target):

- the orchestrator (`run.py`, the `pec-conformance load` process): starts everything, watches the
  senders' mailboxes, drains, judges a sample of receipts and writes the report. It never imports
  Locust, whose gevent monkey-patching would change the sockets and threads of everything else;
- the reference provider in one process and the counterpart in one or more (`stack.py`): asyncio and
  aiosmtpd, never patched by gevent;
- one Locust master and N Locust workers (`swarm.py`): the only processes that import Locust.

This package sits at the top of the layers with `runner.py`: it may start the reference provider.
"""
