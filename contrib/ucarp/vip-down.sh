#!/bin/sh
# vip-down.sh: ucarp downscript (`ucarp -d vip-down.sh`, called as: vip-down.sh <interface> <vip>) for
# HAST. This host is BACKUP (or ucarp starts/stops): unmount and demote every group FIRST (so the two
# hosts are never primary together for longer than an umount; see group_down in hast-failover.sh),
# then drop the service address. Also run by ucarp at start: a resource in role init after a boot
# becomes secondary. Returns at once and works in the background (see carp_request in
# hast-carp-lib.sh). Safe to run twice.
set -u
. "$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)/hast-carp-lib.sh"

iface=${1:?usage: vip-down.sh interface address}
vip=${2:?usage: vip-down.sh interface address}
carp_request backup "$@"
lock
if superseded; then
	log info "BACKUP for $vip on $iface: overtaken by a later ucarp event, nothing to do"
	exit 0
fi
log notice "becoming BACKUP for $vip on $iface"

failed=0
all_down || failed=1
if ip -o addr show dev "$iface" 2>/dev/null | grep -q " $vip/"; then
	ip addr del "$vip/$VIP_PREFIX" dev "$iface" && log notice "$vip removed from $iface"
fi
exit "$failed"
