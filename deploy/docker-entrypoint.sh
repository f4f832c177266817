#!/bin/sh
# Settings that Spoke takes only as values are given to the container as files: NAME_FILE holds
# the value of NAME (the official images' convention), so that no secret sits in the Compose file,
# the image or `docker inspect`.
set -eu
for name in SPOKE_INFLUX_TOKEN SPOKE_MQTT_PASSWORD; do
    eval "file=\${${name}_FILE:-}"
    if [ -n "$file" ]; then
        value=$(cat "$file")
        export "$name=$value"
        unset "${name}_FILE"
    fi
done
exec "$@"
