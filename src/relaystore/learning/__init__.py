"""Pure-Python ports of NeMo Relay's adaptive learners, run against any relaystore backend.

- :mod:`~relaystore.learning.tdigest`: the Rust ``tdigest`` 0.2.3 crate, bit for bit;
- :mod:`~relaystore.learning.latency`: latency sensitivity, accumulators, the prediction trie;
- :mod:`~relaystore.learning.plan`: tool parallelism (the ExecutionPlan);
- :mod:`~relaystore.learning.acg`: PromptIR, learning keys, observation windows, stability;
- :mod:`~relaystore.learning.runtime`: :func:`learn` (incremental) and :func:`relearn`.
"""

from relaystore.learning.latency import predict
from relaystore.learning.runtime import LEARNERS, LearnConfig, LearnReport, learn, relearn
from relaystore.learning.tdigest import TDigest

__all__ = ["LEARNERS", "LearnConfig", "LearnReport", "TDigest", "learn", "predict", "relearn"]
