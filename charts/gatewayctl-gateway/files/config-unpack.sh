set -eu
mode=$1 src=$2 dst=$3 every=${4:-2}
case $every in '' | *[!0-9]*) every=2 ;; esac
if [ "$every" -lt 1 ] || [ "$every" -gt 60 ]; then every=2; fi

unpack() {
  for f in lds.json rds.json cds.json; do
    if [ -f "$1/$f" ]; then
      cp "$1/$f" "$2/$f" || return 1
    elif [ -f "$1/$f.gz" ]; then
      gzip -dc "$1/$f.gz" >"$2/$f" || return 1
    else
      echo "config-unpack: $1 has neither $f nor $f.gz" >&2
      return 1
    fi
  done
  [ -f "$1/cds.json.sha256" ] || return 0
  want=$(cat "$1/cds.json.sha256") && got=$(sha256sum <"$2/cds.json") || return 1
  if [ "${got%% *}" != "$want" ]; then
    echo "config-unpack: $1 has lds.json and cds.json of different renders" >&2
    return 1
  fi
}

publish() {
  ver=$(readlink "$src/..data") || return 1
  case $ver in ..?*/* | ..data*) return 1 ;; ..?*) ;; *) return 1 ;; esac
  [ "$(readlink "$dst/..data" 2>/dev/null || :)" != "$ver" ] || return 0
  tmp=$(mktemp -d "$dst/.tmp.XXXXXX") || return 1
  if ! unpack "$src/$ver" "$tmp"; then rm -rf "$tmp"; return 1; fi
  chmod 0755 "$tmp" && rm -rf "${dst:?}/$ver" && mv "$tmp" "$dst/$ver" || return 1
  rm -f "$dst/..data_tmp"
  ln -s "$ver" "$dst/..data_tmp" && mv -Tf "$dst/..data_tmp" "$dst/..data" || return 1
  for f in lds.json rds.json cds.json; do
    [ -L "$dst/$f" ] || ln -s "..data/$f" "$dst/$f" || return 1
  done
  for old in "$dst"/..?*; do
    case ${old##*/} in ..data | "$ver") ;; *) rm -rf "$old" ;; esac
  done
  echo "config-unpack: published $ver"
}

rm -rf "${dst:?}"/.tmp.*
case $mode in
  once) publish ;;
  watch)
    trap 'exit 0' TERM INT
    while :; do
      publish || echo "config-unpack: cannot publish $src; next try in ${every}s" >&2
      sleep "$every" &
      wait $!
    done
    ;;
  *) echo "usage: config-unpack once|watch SRC DST [SECONDS]" >&2; exit 2 ;;
esac
