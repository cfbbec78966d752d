"""Exit codes that training processes and the job scripts around them agree on."""

# A rank stopped on purpose after writing a step checkpoint (SLURM's time-limit warning
# signal, SIGUSR1, or SIGTERM at pre-emption): the job requeues itself and resumes.
# 75 is EX_TEMPFAIL in sysexits.h: "temporary failure, the user is invited to retry".
REQUEUE = 75

# The progress watchdog ended a rank that waited too long (as timeout(1) exits).
WATCHDOG = 124
