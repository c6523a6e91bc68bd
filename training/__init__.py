"""Training: one entry point (`python -m training.train`) for SageMaker, EC2 and local runs.

`training.defaults` holds the numbers the demo workflow and the CLI share. Importing this
package stays light (no torch); the heavy modules are imported by the code that needs them.
"""
from training.config import Defaults, InputError, defaults

__all__ = ["Defaults", "InputError", "defaults"]
