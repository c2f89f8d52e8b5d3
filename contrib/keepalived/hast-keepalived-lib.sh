# hast-keepalived-lib.sh: the keepalived side of hast-notify.sh and hast-check.sh (sourced, not run).
# Loads the settings (HAST_KEEPALIVED_CONF, /etc/hast-keepalived.conf, or hast-keepalived.conf next to
# the scripts), then the shared failover logic, hast-failover.sh (next to the scripts, or ../common/).

HERE=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
if [ -n "${HAST_KEEPALIVED_CONF:-}" ]; then
	. "$HAST_KEEPALIVED_CONF"
elif [ -r /etc/hast-keepalived.conf ]; then
	. /etc/hast-keepalived.conf
else
	. "$HERE/hast-keepalived.conf"
fi
: "${LOCK_FILE:=/var/run/hast-keepalived.lock}" "${JQ:=jq}"
FAILOVER_TAG=hast-keepalived
if [ -r "$HERE/hast-failover.sh" ]; then
	. "$HERE/hast-failover.sh"
else
	. "$HERE/../common/hast-failover.sh"
fi
# Left by hast-notify.sh when MASTER could not bring a group up; hast-check.sh fails while it exists.
FAILED_FILE=$STATE_DIR/hast-keepalived.failed
