#!/bin/sh
# vip-up.sh: ucarp upscript (`ucarp -u vip-up.sh`, called as: vip-up.sh <interface> <vip>) for HAST.
# ucarp elected this host MASTER: bring every group of HAST_RESOURCES up (promote its resources, wait
# for their devices, mount; see group_up in hast-failover.sh), then add the service address. Returns at
# once and works in the background (see carp_request in hast-carp-lib.sh). Safe to run twice.
set -u
. "$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)/hast-carp-lib.sh"

iface=${1:?usage: vip-up.sh interface address}
vip=${2:?usage: vip-up.sh interface address}
carp_request master "$@"
lock
if superseded; then
	log info "MASTER for $vip on $iface: overtaken by a later ucarp event, nothing to do"
	exit 0
fi
log notice "becoming MASTER for $vip on $iface"

all_up
case $? in
0) ;;
2) exit 0 ;;
*)
	log err "not adding $vip: a resource could not be brought up"
	exit 1
	;;
esac
if ip -o addr show dev "$iface" | grep -q " $vip/"; then
	log info "$vip already on $iface"
else
	ip addr add "$vip/$VIP_PREFIX" dev "$iface"
	log notice "$vip added on $iface"
fi
exit 0
