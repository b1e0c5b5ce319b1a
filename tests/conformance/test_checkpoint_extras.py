"""The kit's ``relaystore.testing.cases.checkpoint_extras`` on every built-in backend."""

from relaystore.testing.cases.checkpoint_extras import *  # noqa: F403
from tests.conformance.factories import FACTORIES as RELAYSTORE_FACTORIES  # noqa: F401
