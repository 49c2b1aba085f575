#!/bin/bash
# Write server.properties from KAFKA_* variables (apache/kafka's rule: '_' -> '.',
# '__' -> '_', '___' -> '-', lower-cased), format the storage once, run the broker.
# KAFKA_TLS_DIR (optional): a folder with server.key and server.pem (`soundscape infra
# certs`); they are joined into the PEM keystore /opt/kafka/config/keystore.pem (0600),
# which a listener's ssl.keystore.location names.
set -euo pipefail
conf=/opt/kafka/config/server.properties
: > "$conf"
skip=" KAFKA_HEAP_OPTS KAFKA_OPTS KAFKA_JVM_PERFORMANCE_OPTS KAFKA_LOG4J_OPTS KAFKA_TLS_DIR "
for var in $(compgen -e | grep '^KAFKA_' || true); do
  [[ "$skip" == *" $var "* ]] && continue
  name=$(printf '%s' "${var#KAFKA_}" | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g' | tr '[:upper:]' '[:lower:]')
  printf '%s=%s\n' "$name" "${!var}" >> "$conf"
done
if [ -n "${KAFKA_TLS_DIR:-}" ]; then
  keystore=/opt/kafka/config/keystore.pem
  ( umask 077; cat "$KAFKA_TLS_DIR/server.key" "$KAFKA_TLS_DIR/server.pem" > "$keystore" )
fi
grep -q '^log.dirs=' "$conf" || echo "log.dirs=/var/lib/kafka/data" >> "$conf"
logdir=$(sed -n 's/^log.dirs=//p' "$conf" | cut -d, -f1)
cp="/opt/kafka/libs/*"
log4j="-Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties"
if [ ! -f "$logdir/meta.properties" ]; then
  cluster_id=${CLUSTER_ID:-$(java -cp "$cp" $log4j kafka.tools.StorageTool random-uuid)}
  java -cp "$cp" $log4j kafka.tools.StorageTool format --cluster-id="$cluster_id" -c "$conf"
fi
exec java ${KAFKA_HEAP_OPTS:--Xmx768m -Xms768m} -XX:+UseG1GC -Djava.awt.headless=true \
  $log4j -cp "$cp" kafka.Kafka "$conf"
