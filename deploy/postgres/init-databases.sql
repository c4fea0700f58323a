-- Keycloak keeps its own database beside the registry (docker-compose).
CREATE DATABASE keycloak;
