# The site's modules (the profile's execution.modules), loaded in order. Batch shells are not
# login shells, so the `module` function may need its init script first.
if ! command -v module >/dev/null 2>&1; then
  for init in /etc/profile.d/lmod.sh /etc/profile.d/modules.sh /usr/share/lmod/lmod/init/bash; do
    if [[ -r $init ]]; then
      # shellcheck source=/dev/null
      source "$init"
      break
    fi
  done
fi
module load "${SEMHPC_MODULES[@]}"
