"""The kit's ``relaystore.testing.cases.checkpoint_full_reads`` on every built-in backend."""

from relaystore.testing.cases.checkpoint_full_reads import *  # noqa: F403
from tests.conformance.factories import FACTORIES as RELAYSTORE_FACTORIES  # noqa: F401
