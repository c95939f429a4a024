"""The several-cluster fixtures (two scenario clusters, the fleet of agents over them) for the
hostile-fleet tests, as tests/chatops defines them."""

from tests.chatops.conftest import agents, sims

__all__ = ["agents", "sims"]
