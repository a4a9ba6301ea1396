-- provider_control.messages_per_second: no ChannelProvider field sets a send rate any more and no
-- worker paces by it; from this release on nothing reads or writes it. The column stays for now:
-- workers and operators of the releases before this one select and upsert it, and they keep running
-- beside the new ones during a rolling upgrade. A later migration drops it.
COMMENT ON COLUMN provider_control.messages_per_second IS
    'Unused since migration 0013 (nothing reads or writes it); kept for rolling upgrades, dropped later.';
