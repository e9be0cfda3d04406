"""The embedded default job: synthetic world -> pretrain -> CLIPSelf -> evaluation -> report."""
from .config import DemoConfig
from .pipeline import run_demo

__all__ = ["DemoConfig", "run_demo"]
