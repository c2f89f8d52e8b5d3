# hast-carp-lib.sh: the ucarp side of vip-up.sh, vip-down.sh and hast-hook.sh (sourced, not run).
# Loads the settings (HAST_CARP_CONF, /etc/hast-carp.conf, or hast-carp.conf next to the scripts),
# then the shared failover logic, hast-failover.sh (next to the scripts, or ../common/ in the tree).

HERE=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
if [ -n "${HAST_CARP_CONF:-}" ]; then
	. "$HAST_CARP_CONF"
elif [ -r /etc/hast-carp.conf ]; then
	. /etc/hast-carp.conf
else
	. "$HERE/hast-carp.conf"
fi
: "${VIP_PREFIX:=24}" "${LOCK_FILE:=/var/run/hast-carp.lock}" "${HOOK_CHAIN:=}" "${DETACH:=yes}"
FAILOVER_TAG=hast-carp
if [ -r "$HERE/hast-failover.sh" ]; then
	. "$HERE/hast-failover.sh"
else
	. "$HERE/../common/hast-failover.sh"
fi

# carp_request master|backup ARGS...: record what ucarp asked for last (`request`), then (DETACH=yes)
# go on in the background. ucarp waits for its up/down script and sends no advertisements meanwhile:
# a script that runs longer than 3 x advbase (promotion, mount, a dead peer's connect timeout) would
# make the other host take over too. The detached run is serialised by `lock` and does nothing if a
# later request overtook it (`superseded`). HAST_CARP_FOREGROUND=yes (or DETACH=no) runs in the
# foreground.
carp_request() {
	want=$1
	shift
	if [ -n "${HAST_FAILOVER_REQUEST:-}" ]; then
		return 0 # the detached run of an earlier call
	fi
	request "$want"
	if [ "$DETACH" = yes ] && [ "${HAST_CARP_FOREGROUND:-no}" != yes ]; then
		"$0" "$@" </dev/null &
		exit 0
	fi
}
