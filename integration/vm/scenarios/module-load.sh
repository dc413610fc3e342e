# Capture of module loading, on kernels with CONFIG_MODULES (the development host has none, so
# its init_module/finit_module tracepoints do not exist): finit_module(2) of a file that is not
# a module fails with ENOEXEC, and guard records it with its params and result.
# expect: guard-ready finit-module-enoexec module-load-event
# shellcheck shell=sh source=integration/vm/guest/lib.sh
. /usr/share/guard-vm/lib.sh

printf 'not an ELF module\n' >/tmp/guard-not-a-module.ko
if guard_start; then
    pass guard-ready "guard run is up"
    outcome finit-module-enoexec errno=8 "$TESTKIT" try-finit-module /tmp/guard-not-a-module.ko foo=bar
    sleep 0.5
    guard_stop
    ev="$(grep '"kind":"module_load"' "$GUARD_OUT" | head -n1)"
    # ENOEXEC (8): the kernel rejected the image; the params string is what insmod passed.
    if [ -n "$ev" ] && echo "$ev" | grep -q '"ret":-8[,}]' && echo "$ev" | grep -q '"syscall":"finit_module"' \
        && echo "$ev" | grep -q '"params":{"text":"foo=bar"}'; then
        pass module-load-event "$ev"
    else
        fail module-load-event "no module_load event with ret -8 and params foo=bar; $(grep -c . "$GUARD_OUT") lines; module lines: $(grep module "$GUARD_OUT" | head -c 400)"
    fi
else
    fail guard-ready "guard run did not become ready"
fi
finish
