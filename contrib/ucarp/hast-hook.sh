#!/bin/sh
# hast-hook.sh: hast.conf `exec` hook (HAST-SPEC §9). Logs every event; on split-brain it leaves the
# marker <STATE_DIR>/<resource>.split-brain that stops vip-up.sh from mounting; on connect (a
# successful handshake, so no split-brain any more) it removes it. Install: `exec /path/hast-hook.sh`.
set -u
. "$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)/hast-carp-lib.sh"

event=${1:-}
res=${2:-}
case "$event" in
split-brain)
	mkdir -p "$STATE_DIR"
	date '+%s' >"$STATE_DIR/$res.split-brain"
	log err "$res: split-brain detected; vip-up.sh will not mount it until recovered (hastctl role init/create/role secondary on the node whose data is discarded)"
	;;
connect)
	if [ -e "$STATE_DIR/$res.split-brain" ]; then
		rm -f "$STATE_DIR/$res.split-brain"
		log notice "$res: connected; split-brain marker removed"
	else
		log info "$res: connected"
	fi
	;;
role)
	log notice "$res: role changed from ${3:-?} to ${4:-?}"
	;;
disconnect | syncstart | syncdone | syncintr)
	log info "$res: $event"
	;;
*)
	log warning "unknown event: $*"
	;;
esac
if [ -n "$HOOK_CHAIN" ]; then
	exec "$HOOK_CHAIN" "$@"
fi
exit 0
