package harness

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/http"
	"testing"
	"time"
)

// AddSigningKey gives the realm an RSA signing key the test knows the
// private half of (Keycloak's "rsa" key provider), so tests can sign tokens
// that pass the signature check and vary every claim. It returns the key
// and the kid Keycloak publishes it under.
func (r *Realm) AddSigningKey(t testing.TB) (*rsa.PrivateKey, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: r.Name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	ctx := context.Background()
	tok := r.AdminToken(t)
	realm, err := r.GC.GetRealm(ctx, tok, r.Name)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := r.GC.GetRequestWithBearerAuth(ctx, tok).SetBody(map[string]any{
		"name": "test-key", "providerId": "rsa", "providerType": "org.keycloak.keys.KeyProvider", "parentId": *realm.ID,
		"config": map[string][]string{
			"priority": {"10"}, "enabled": {"true"}, "active": {"true"}, "algorithm": {"RS256"},
			"privateKey": {string(keyPEM)}, "certificate": {string(certPEM)},
		},
	}).Post(r.env.KeycloakURL + "/admin/realms/" + r.Name + "/components")
	if err != nil || resp.StatusCode() != http.StatusCreated {
		t.Fatalf("add signing key: %v %s", err, resp.String())
	}
	var jwks struct {
		Keys []struct {
			Kid string `json:"kid"`
			N   string `json:"n"`
		} `json:"keys"`
	}
	if _, err := r.GC.GetRequest(ctx).SetResult(&jwks).Get(r.env.KeycloakURL + "/realms/" + r.Name + "/protocol/openid-connect/certs"); err != nil {
		t.Fatal(err)
	}
	n := base64.RawURLEncoding.EncodeToString(key.N.Bytes())
	for _, k := range jwks.Keys {
		if k.N == n {
			return key, k.Kid
		}
	}
	t.Fatal("the added key is not in the realm's JWKS")
	return nil, ""
}

// PublicKeyPEM returns the PEM of the realm's first RS256 public key, as an
// attacker would read it from the JWKS.
func (r *Realm) PublicKeyPEM(t testing.TB, key *rsa.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
