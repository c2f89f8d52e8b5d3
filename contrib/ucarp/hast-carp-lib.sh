# hast-carp-lib.sh: helpers shared by vip-up.sh, vip-down.sh and hast-hook.sh (sourced, not run).
# Loads the settings (HAST_CARP_CONF, /etc/hast-carp.conf, or hast-carp.conf next to the scripts).

HERE=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
if [ -n "${HAST_CARP_CONF:-}" ]; then
	. "$HAST_CARP_CONF"
elif [ -r /etc/hast-carp.conf ]; then
	. /etc/hast-carp.conf
else
	. "$HERE/hast-carp.conf"
fi
: "${HASTCTL:=hastctl}" "${HASTCTL_ARGS:=}" "${VIP_PREFIX:=24}" "${DEVICE_WAIT:=30}" "${UMOUNT_WAIT:=20}"
: "${KILL_USERS:=no}" "${SECONDARY_FROM_INIT:=yes}" "${STATE_DIR:=/var/run/hastd}"
: "${LOCK_FILE:=/var/run/hast-carp.lock}" "${LOCK_WAIT:=120}" "${HOOK_CHAIN:=}"

# log LEVEL MESSAGE...: to syslog (tag hast-carp) and to stderr.
log() {
	level=$1
	shift
	echo "hast-carp[$$]: $level: $*" >&2
	logger -t hast-carp -p "daemon.$level" -- "$*" 2>/dev/null || true
}

# hctl SUBCOMMAND ARGS...: hastctl with the configured options.
hctl() {
	sub=$1
	shift
	# shellcheck disable=SC2086 # HASTCTL and HASTCTL_ARGS are word lists on purpose.
	$HASTCTL "$sub" $HASTCTL_ARGS "$@"
}

# field RESOURCE NAME: one field of `hastctl status RESOURCE` ("role", "provname", "status"), or "".
field() {
	hctl status "$1" 2>/dev/null | awk -v k="$2" '{ sub(/^[ \t]+/, "") } index($0, k ": ") == 1 { print substr($0, length(k) + 3); exit }'
}

# lock: one up/down script at a time on this host (fd 9 stays open until the script exits).
lock() {
	mkdir -p "$(dirname "$LOCK_FILE")"
	exec 9>>"$LOCK_FILE"
	if ! flock -w "$LOCK_WAIT" 9; then
		log err "could not lock $LOCK_FILE within ${LOCK_WAIT}s"
		exit 1
	fi
}

# is_mounted MOUNTPOINT
is_mounted() {
	awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/self/mounts
}

# split_brain RESOURCE: true while the hook's split-brain marker exists.
split_brain() {
	[ -e "$STATE_DIR/$1.split-brain" ]
}
