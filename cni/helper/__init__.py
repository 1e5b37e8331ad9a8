"""The warm per-node helper (server), its wire format (wire), a readiness probe (probe), and the
static C client the runtime execs (client/bond.c)."""
