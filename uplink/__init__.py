"""The platform link: stored records out over SM4-sealed MQTT, commands in.

Owns the envelope (uplink/envelope.py), SM4 and SM2 (uplink/crypto.py), the
MQTT session with failover between brokers (uplink/mqtt.py) and the
platform's commands (uplink/commands.py). Reads what to send from the store
(buffer/); may import records/, protocols/, config/ and buffer/, never
collector/.
"""
