#!/bin/sh
# milvus-backup-hook.sh: make a Milvus backup, then replicate it off-site with offsite.
#
#   milvus-backup-hook.sh [milvus-backup create options...]
#   milvus-backup-hook.sh -n nightly_$(date -u +%Y_%m_%d)
#
# 1. runs `milvus-backup create "$@"`; if it fails, nothing is replicated and this script exits
#    with milvus-backup's exit code;
# 2. then `offsite replicate NAME --wait 10m` when a name was given (-n NAME / --name NAME),
#    else `offsite replicate --latest --wait 10m` (the backup with the newest change at the
#    source, complete or not: the one just made). offsite waits until the backup is complete
#    (meta written, every binlog whole, nothing changed for options.quietPeriod), copies it to
#    the destinations and exits with its own code:
#      0 every destination has it, 1 error, 2 usage/config error, 4 some destinations failed.
#
# Environment (all optional):
#   MILVUS_BACKUP   milvus-backup command, words split on spaces
#                   (default: milvus-backup; e.g. "/opt/milvus-backup/milvus-backup --config /etc/milvus-backup/backup.yaml")
#   OFFSITE         offsite command (default: offsite; e.g. "node /opt/offsite/bin/offsite.js")
#   OFFSITE_CONFIG  offsite's config file, read by offsite itself (default: ./offsite.yaml)
#   OFFSITE_TO      destinations, comma-separated (default: every configured destination)
#   OFFSITE_WAIT    how long offsite waits for the backup to be complete (default: 10m)
#   OFFSITE_ARGS    more replicate options, words split on spaces (e.g. "--bwlimit 20MiB --quiet")
#
# Example crontab line (02:30 every night, output mailed by cron):
#   30 2 * * *  OFFSITE_CONFIG=/etc/offsite/offsite.yaml OFFSITE_TO=nas,cloud /usr/local/bin/milvus-backup-hook.sh -n nightly_$(date -u +\%Y_\%m_\%d)
set -u

MILVUS_BACKUP=${MILVUS_BACKUP:-milvus-backup}
OFFSITE=${OFFSITE:-offsite}
OFFSITE_WAIT=${OFFSITE_WAIT:-10m}
OFFSITE_TO=${OFFSITE_TO:-}
OFFSITE_ARGS=${OFFSITE_ARGS:-}

say() { printf '%s\n' "milvus-backup-hook: $*" >&2; }

# The backup name, when the caller gave one (-n NAME, --name NAME, --name=NAME, -nNAME).
name=
expect_name=
for arg in "$@"; do
  if [ -n "$expect_name" ]; then name=$arg; expect_name=; continue; fi
  case $arg in
    -n|--name) expect_name=1 ;;
    --name=*) name=${arg#--name=} ;;
    -n?*) name=${arg#-n} ;;
  esac
done

# shellcheck disable=SC2086 # MILVUS_BACKUP and OFFSITE may carry options: split on purpose
command -v ${MILVUS_BACKUP%% *} >/dev/null 2>&1 || { say "cannot run milvus-backup: '${MILVUS_BACKUP%% *}' not found (set MILVUS_BACKUP)"; exit 127; }
# shellcheck disable=SC2086
command -v ${OFFSITE%% *} >/dev/null 2>&1 || { say "cannot run offsite: '${OFFSITE%% *}' not found (set OFFSITE, e.g. OFFSITE=\"node /opt/offsite/bin/offsite.js\")"; exit 127; }

say "running: $MILVUS_BACKUP create $*"
# shellcheck disable=SC2086
$MILVUS_BACKUP create "$@"
code=$?
if [ "$code" -ne 0 ]; then
  say "milvus-backup create failed (exit code $code); nothing was replicated. See milvus-backup's output above."
  exit "$code"
fi

if [ -n "$name" ]; then which=$name; else which=--latest; fi
to=
[ -n "$OFFSITE_TO" ] && to="--to $OFFSITE_TO"
say "backup made; replicating ${name:-the newest backup} (offsite replicate $which --wait $OFFSITE_WAIT $to $OFFSITE_ARGS)"
# shellcheck disable=SC2086
$OFFSITE replicate "$which" --wait "$OFFSITE_WAIT" $to $OFFSITE_ARGS
code=$?
case $code in
  0) say "done: the backup is at every destination" ;;
  4) say "PARTIAL: some destinations failed (exit code 4; see above). Run the same offsite replicate again to finish them: it copies only what they lack." ;;
  2) say "offsite refused its command line or config (exit code 2; see above)" ;;
  *) say "offsite replicate failed (exit code $code; see above). The backup itself was made; run offsite replicate ${name:---latest} again once the cause is fixed." ;;
esac
exit "$code"
