#!/bin/sh
# One-shot set-up for deploy/compose.yaml, run as root in the Spoke image before the services that
# need its files. Every step keeps what already exists, so it runs on every `docker compose up`.
#
#   secrets  random passwords and tokens in the `secrets` volume, each in a folder only the
#            container user that needs it can enter
#   broker   the broker secret and Mosquitto's first dynamic-security file (`spoke cloud broker
#            init`, which reads the registry: run after PostgreSQL is up), and the broker's TLS
#            files from ./certs, owned by Mosquitto's user
set -eu

# The users the images run as: this image's spoke, postgres, influxdb, prometheus (nobody) and
# eclipse-mosquitto's mosquitto.
SPOKE=10001 POSTGRES=999 INFLUXDB=1000 PROMETHEUS=65534 MOSQUITTO=1883
# Where the volumes are mounted (the tests run this script on folders of their own).
S=${SPOKE_SETUP_SECRETS:-/secrets}
BROKER=${SPOKE_SETUP_MOSQUITTO:-/mosquitto}
CERTS=${SPOKE_SETUP_CERTS:-/certs}

# A random secret at $1 (mode 0600, root's), unless there is one.
new_secret() {
    [ -s "$1" ] && return 0
    (umask 077 && python -c 'import secrets; print(secrets.token_urlsafe(32))' >"$1.tmp")
    mv "$1.tmp" "$1"
}

# A folder only uid $1 may enter.
private_folder() { install -d -m 0700 -o "$1" -g "$1" "$2"; }

# $3 is a copy of $2 that only uid $1 may read (and write: the cloud tightens its files itself).
hand_over() { install -m 0600 -o "$1" -g "$1" "$2" "$3"; }

secrets() {
    install -d -m 0755 "$S"
    private_folder 0 "$S/originals"
    for f in postgres-password influxdb-password influxdb-token metrics-token; do
        new_secret "$S/originals/$f"
    done
    private_folder "$POSTGRES" "$S/postgres"
    hand_over "$POSTGRES" "$S/originals/postgres-password" "$S/postgres/password"
    private_folder "$INFLUXDB" "$S/influxdb"
    hand_over "$INFLUXDB" "$S/originals/influxdb-password" "$S/influxdb/password"
    hand_over "$INFLUXDB" "$S/originals/influxdb-token" "$S/influxdb/token"
    private_folder "$PROMETHEUS" "$S/prometheus"
    hand_over "$PROMETHEUS" "$S/originals/metrics-token" "$S/prometheus/metrics-token"
    private_folder "$SPOKE" "$S/spoke"
    hand_over "$SPOKE" "$S/originals/metrics-token" "$S/spoke/metrics-token"
    hand_over "$SPOKE" "$S/originals/influxdb-token" "$S/spoke/influx-token"
    # libpq reads the database password from here (PGPASSFILE), for `spoke cloud run` and for
    # every `docker compose exec cloud-a spoke ...` alike.
    (umask 077 && printf 'postgres:5432:spoke:spoke:%s\n' "$(cat "$S/originals/postgres-password")" \
        >"$S/originals/pgpass")
    hand_over "$SPOKE" "$S/originals/pgpass" "$S/spoke/pgpass"
}

broker() {
    dynsec="$BROKER/data/dynamic-security.json"
    if [ ! -s "$dynsec" ]; then
        spoke cloud broker init --mosquitto-dynsec "$dynsec"
    fi
    chown "$MOSQUITTO:$MOSQUITTO" "$BROKER/data" "$dynsec"
    chmod 0600 "$dynsec"
    chown "$SPOKE:$SPOKE" "$SPOKE_BROKER_SECRET_FILE"
    chmod 0600 "$SPOKE_BROKER_SECRET_FILE"
    for f in ca.crt server.crt server.key; do
        if [ ! -s "$CERTS/$f" ]; then
            echo "deploy/certs/$f is missing: the broker's TLS listener needs ca.crt, server.crt" \
                 "and server.key (a certificate for the name hubs dial)" >&2
            exit 1
        fi
        install -D -m 0400 -o "$MOSQUITTO" -g "$MOSQUITTO" "$CERTS/$f" "$BROKER/certs/$f"
    done
}

case "${1:-}" in
    secrets) secrets ;;
    broker) broker ;;
    *) echo "usage: $0 secrets|broker" >&2; exit 2 ;;
esac
