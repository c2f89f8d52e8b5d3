#!/bin/sh
# hast-notify.sh: keepalived notify script (`notify /path/hast-notify.sh` in a vrrp_instance or a
# vrrp_sync_group; keepalived calls it as: hast-notify.sh TYPE NAME STATE PRIORITY). MASTER: bring
# every group of HAST_RESOURCES up (promote, wait for the devices, mount: group_up in
# hast-failover.sh); BACKUP, FAULT, STOP: unmount and demote (group_down). keepalived does not wait for
# notify scripts, so calls can overlap: they are serialised with flock and a call overtaken by a later
# one does nothing. A MASTER that cannot bring a group up (hastd refused: the peer is still primary)
# leaves FAILED_FILE, which makes hast-check.sh fail: keepalived goes to FAULT and drops the address.
set -u
. "$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)/hast-keepalived-lib.sh"

type=${1:?usage: hast-notify.sh TYPE NAME STATE [PRIORITY]}
name=${2:?usage: hast-notify.sh TYPE NAME STATE [PRIORITY]}
state=${3:?usage: hast-notify.sh TYPE NAME STATE [PRIORITY]}
prio=${4:-}
case "$state" in
MASTER) want=master ;;
BACKUP | FAULT | STOP) want=backup ;;
*)
	log warning "$type $name: state $state ignored"
	exit 0
	;;
esac
request "$want"
lock
if superseded; then
	log info "$type $name $state: overtaken by a later keepalived event, nothing to do"
	exit 0
fi
log notice "$type $name: $state${prio:+ (priority $prio)}"
if [ "$want" = master ]; then
	all_up
	case $? in
	0) rm -f "$FAILED_FILE" ;;
	2) ;;
	*)
		log err "$type $name: MASTER without storage; hast-check.sh fails until the next state change (keepalived goes to FAULT)"
		date '+%s' >"$FAILED_FILE"
		exit 1
		;;
	esac
	exit 0
fi
rm -f "$FAILED_FILE"
all_down
