"""The engine: the side-effecting half of reconcile (the planner is the pure half).

- `inputs`: fingerprints of a plan's inputs (for a saved plan);
- `journal`: intents, the records they produce, and resuming after a crash;
- `create`: one create, exactly once; `stop`: the stop of a replace or a prune;
- `health`: new deployments watched until Running or failed;
- `driver`: `Engine`, which carries out a plan: every stop before any create.
"""

from reconciler.engine.context import EngineOptions
from reconciler.engine.driver import Engine, ProgressCallback
from reconciler.engine.inputs import fingerprints
from reconciler.model import Outcome

__all__ = ["Engine", "EngineOptions", "Outcome", "ProgressCallback", "fingerprints"]
