"""autotts-graph: agents that discover test-time-scaling controllers, scored by exact replay."""

__version__ = "0.1.0"
