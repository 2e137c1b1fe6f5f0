"""CRM connectors: one module per CRM, each implementing `calsync.sync.CrmAdapter`.

`ADAPTERS` maps the provider key stored on the organization (``crm_type``) to the adapter
class; a connector registers itself here and nowhere else.
"""

from __future__ import annotations

from calsync.crm.dynamics import DynamicsAdapter
from calsync.crm.suitecrm import SuiteCrmAdapter

ADAPTERS: dict[str, type] = {
    SuiteCrmAdapter.provider: SuiteCrmAdapter,
    DynamicsAdapter.provider: DynamicsAdapter,
}


def adapter_class(provider: str) -> type:
    """The adapter class for a provider key; a clear error for an unknown one."""
    try:
        return ADAPTERS[provider]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise ValueError(f"Unknown CRM {provider!r}; calsync knows {known}.") from None


__all__ = ["ADAPTERS", "DynamicsAdapter", "SuiteCrmAdapter", "adapter_class"]
