#!/bin/sh
# One line per process of the container, for the e2e tests:
#   pid state ppid pgrp session tpgid comm
# Builtins only: no fork, so this script is the only process it adds, and it leaves itself out.
for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [ "$pid" = "$$" ] && continue
    read -r stat 2>/dev/null <"$dir/stat" || continue
    comm=${stat#*(}
    comm=${comm%)*}
    # Split on purpose: the fields after "(comm) ".
    # shellcheck disable=SC2086
    set -- ${stat##*) }
    state=$1 ppid=$2 pgrp=$3 session=$4 tpgid=$6
    echo "$pid $state $ppid $pgrp $session $tpgid $comm"
done
