package crypt

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

var credTime = time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("x", 3600))

func TestHostCredentialRoundTrip(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			c, err := NewHostCredential("db-1.example", "0123456789abcdef0123456789abcdef", kind)
			if err != nil {
				t.Fatal(err)
			}
			if RecipientKind(c.WriterRecipient) != kind {
				t.Fatalf("writer recipient kind %s, want %s", RecipientKind(c.WriterRecipient), kind)
			}
			file := c.Marshal(credTime)
			if !bytes.HasPrefix(file, []byte("# vaultbak host credential")) || !bytes.Contains(file, []byte("# created: 2026-03-04T04:06:07Z\n")) {
				t.Errorf("unexpected header:\n%s", file)
			}
			got, err := ParseHostCredential(file)
			if err != nil {
				t.Fatal(err)
			}
			if got.Host != c.Host || got.Repository != c.Repository || got.WriterRecipient != c.WriterRecipient {
				t.Fatalf("round trip: %+v, want %+v", got, c)
			}
			if got.Signing.Public() != c.Signing.Public() || got.Signing.text() != c.Signing.text() {
				t.Fatal("signing key changed in the round trip")
			}
			if secretOf(got.Writer) != secretOf(c.Writer) {
				t.Fatal("writer identity changed in the round trip")
			}
			if !bytes.Equal(got.Marshal(credTime), file) {
				t.Fatal("Marshal(Parse(file)) differs from file")
			}
			// The parsed writer identity opens what is sealed to its recipient,
			// and the parsed signing key signs for the public key.
			r, err := ParseRecipient(c.WriterRecipient)
			if err != nil {
				t.Fatal(err)
			}
			sealed, err := Seal([]byte("index"), []age.Recipient{r})
			if err != nil {
				t.Fatal(err)
			}
			if p, err := Open(sealed, 10, []age.Identity{got.Writer}); err != nil || string(p) != "index" {
				t.Fatalf("parsed writer identity: %q, %v", p, err)
			}
			if err := c.Signing.Public().Verify([]byte("m"), got.Signing.Sign([]byte("m"))); err != nil {
				t.Fatal(err)
			}
			// Windows line endings and surrounding blanks are tolerated.
			crlf := bytes.ReplaceAll(file, []byte("\n"), []byte("\r\n"))
			crlf = append([]byte("\n  \n"), crlf...)
			if got, err := ParseHostCredential(crlf); err != nil || got.Host != c.Host {
				t.Fatalf("CRLF file: %v", err)
			}
		})
	}
	if _, err := NewHostCredential("h", "r", "rsa"); err == nil {
		t.Error("NewHostCredential of an unknown kind succeeded")
	}
}

// Every parse error is about a line and never repeats the secrets in it.
func TestParseHostCredentialErrorsHideSecrets(t *testing.T) {
	for _, kind := range kinds {
		c, err := NewHostCredential("web", "repo-id", kind)
		if err != nil {
			t.Fatal(err)
		}
		good := string(c.Marshal(credTime))
		ws := secretOf(c.Writer)
		ss := c.Signing.text()
		drop := func(prefix string) string {
			var out []string
			for l := range strings.Lines(good) {
				if !strings.HasPrefix(l, prefix) {
					out = append(out, l)
				}
			}
			return strings.Join(out, "")
		}
		replace := func(old, new string) string {
			if !strings.Contains(good, old) {
				t.Fatalf("credential lacks %q", old)
			}
			return strings.Replace(good, old, new, 1)
		}
		cases := map[string]string{
			"no host":                drop("host:"),
			"no writer":              drop("writer-identity:"),
			"no signing key":         drop("signing-key:"),
			"writer bad checksum":    replace(ws, ws[:len(ws)-1]+flipChar(ws[len(ws)-1])),
			"writer truncated":       replace(ws, ws[:len(ws)-3]),
			"writer two identities":  replace(ws, ws+"\n"+ws),
			"writer lower case":      replace(ws, strings.ToLower(ws)),
			"writer plus junk":       replace(ws, ws+" junk"),
			"signing truncated":      replace(ss, ss[:len(ss)-2]),
			"signing bad base64":     replace(ss, ss[:len(ss)-1]+"!"),
			"signing no prefix":      replace(ss, strings.TrimPrefix(ss, "VAULTBAK-ED25519-SECRET-KEY-")),
			"signing wrong prefix":   replace(ss, strings.Replace(ss, "ED25519", "ED448", 1)),
			"signing too long":       replace(ss, ss+"AAAA"),
			"secret without key":     replace("writer-identity: ", ""),
			"signing without key":    replace("signing-key: ", ""),
			"unknown key":            replace("host:", "hostname:"),
			"key in upper case":      replace("writer-identity:", "Writer-Identity:"),
			"secret as a key":        replace("writer-identity: "+ws, ws+": x"),
			"signing secret as key":  replace("signing-key: "+ss, ss+": x"),
			"joined lines":           replace("writer-identity: "+ws+"\n", ws+" "),
			"identity file pasted":   replace("writer-identity: "+ws, "# public key: x\n"+ws),
			"only an identity":       ws + "\n",
			"only a signing key":     ss + "\n",
			"empty":                  "",
			"comments only":          "# a\n# b\n",
			"too large":              good + strings.Repeat("#", 64<<10),
			"writer in the host key": replace("host: web", "host: web\nhost"+ws[:10]+": "+ws),
		}
		for name, file := range cases {
			_, err := ParseHostCredential([]byte(file))
			if err == nil {
				if name == "writer plus junk" || name == "identity file pasted" {
					continue // tolerated or not, what matters is the message
				}
				t.Errorf("%s %s: parsed", kind, name)
				continue
			}
			if !strings.HasPrefix(err.Error(), "crypt: ") {
				t.Errorf("%s %s: error %q lacks the package prefix", kind, name, err)
			}
			assertNoSecret(t, kind+" "+name, err, ws, ss)
		}
	}
}

func TestSigning(t *testing.T) {
	k := GenerateSigningKey()
	pub := k.Public()
	if !strings.HasPrefix(string(pub), "ed25519:") {
		t.Fatalf("public key %q lacks its type", pub)
	}
	msg := []byte("vaultbak manifest v1\n{}")
	sig := k.Sign(msg)
	if err := pub.Verify(msg, sig); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(sig)
	bad[10] ^= 1
	if err := pub.Verify(msg, bad); err == nil {
		t.Error("a flipped signature verified")
	}
	if err := pub.Verify(append(bytes.Clone(msg), ' '), sig); err == nil {
		t.Error("a signature verified another message")
	}
	if err := GenerateSigningKey().Public().Verify(msg, sig); err == nil {
		t.Error("a signature verified under another key")
	}
	for _, p := range []PublicKey{"", "ed25519:", "ed25519:AAAA", "rsa:" + PublicKey(strings.TrimPrefix(string(pub), "ed25519:")), pub + "AA", PublicKey(strings.Repeat("x", 5000))} {
		err := p.Verify(msg, sig)
		if err == nil {
			t.Errorf("Verify under %.20q succeeded", p)
			continue
		}
		if len(err.Error()) > 200 {
			t.Errorf("error quotes a %d-byte key whole", len(p))
		}
	}
	if err := pub.Verify(msg, nil); err == nil {
		t.Error("an empty signature verified")
	}
	if GenerateSigningKey().Public() == pub {
		t.Error("two generated keys are equal")
	}
	back, err := parseSigningKey(k.text())
	if err != nil || back.Public() != pub {
		t.Fatalf("parseSigningKey(text) = %v, %v", back.Public(), err)
	}
}
