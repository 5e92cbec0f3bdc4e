package repo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"vaultbak/crypt"
)

// EnrollHost adds a backup host and returns its new credential. It needs
// the repository secrets: a recovery identity or an enrolled host may
// enrol another.
func (r *Repository) EnrollHost(ctx context.Context, name string, now time.Time) (*crypt.HostCredential, error) {
	if r.secrets == nil {
		return nil, ErrNeedHostKey
	}
	if !validHostName(name) {
		return nil, fmt.Errorf("repo: invalid host name %q", name)
	}
	if _, ok := r.cfg.Host(name); ok {
		return nil, fmt.Errorf("repo: host %q is already enrolled (a revoked name is not reused)", name)
	}
	cred, err := crypt.NewHostCredential(name, r.cfg.ID, r.cfg.KeyKind)
	if err != nil {
		return nil, err
	}
	cfg := r.cloneConfig()
	cfg.Hosts = append(cfg.Hosts, HostEntry{Name: name, WriterRecipient: cred.WriterRecipient, SigningKey: cred.Signing.Public(), Enrolled: now.UTC()})
	if err := r.commitConfig(ctx, cfg, r.secrets, nil...); err != nil {
		return nil, err
	}
	return cred, nil
}

// RevokeHost marks a host revoked at now: its manifests from then on are
// rejected, earlier ones stay valid. The secrets are sealed anew without its
// writer recipient and the config key is replaced, so it can neither read
// new index files nor MAC a config; chunk IDs cannot change (that would
// break every stored snapshot), so it still knows how they are computed.
func (r *Repository) RevokeHost(ctx context.Context, name string, now time.Time) error {
	if r.secrets == nil {
		return ErrNeedHostKey
	}
	h, ok := r.cfg.Host(name)
	if !ok {
		return fmt.Errorf("repo: host %q is not enrolled", name)
	}
	if h.Revoked != nil {
		return fmt.Errorf("repo: host %q was already revoked on %s", name, h.Revoked.Format(time.RFC3339))
	}
	if r.keys.Host != nil && r.keys.Host.Host == name {
		return errors.New("repo: a host cannot revoke itself; use the recovery identity or another host")
	}
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return err
	}
	head, _ := ChainHead(snaps, name)
	auditHead, _, err := r.auditChain(ctx, HostSigner(name))
	if err != nil {
		return err
	}
	cfg := r.cloneConfig()
	t := now.UTC()
	for i := range cfg.Hosts {
		if cfg.Hosts[i].Name == name {
			cfg.Hosts[i].Revoked = &t
			cfg.Hosts[i].RevokedAfter = head
			cfg.Hosts[i].AuditRevokedAfter = auditHead.Seq
		}
	}
	secrets := *r.secrets
	secrets.ConfigKey = crypt.NewKey()
	return r.commitConfig(ctx, cfg, &secrets)
}

func (r *Repository) cloneConfig() *Config {
	c := *r.cfg
	c.Hosts = append([]HostEntry(nil), r.cfg.Hosts...)
	c.Recovery = append([]string(nil), r.cfg.Recovery...)
	c.Operators = append([]OperatorEntry(nil), r.cfg.Operators...)
	return &c
}

// commitConfig installs a changed config in every region. Order, so that
// an interruption leaves a repository every key holder can still open:
//  1. the secrets sealed to the new recipient set, as a new keys file;
//  2. every index file sealed anew to the new recipients (new names);
//  3. the config, naming the new keys file, MACed with secrets.ConfigKey;
//  4. the old keys and index files are deleted.
//
// Every region must take it: a config change is not a backup, and a
// region left behind would hold a repository that disagrees.
//
// With replaceIndex set (after packs were renamed by a key rotation), the
// index is written anew from it instead of resealing the old index files.
func (r *Repository) commitConfig(ctx context.Context, cfg *Config, secrets *Secrets, replaceIndex ...[]indexPack) error {
	recipients, _, err := crypt.ParseRecipients(append(append([]string(nil), cfg.Recovery...), cfg.Writers()...))
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	sealed, keyName, err := sealSecrets(secrets, recipients)
	if err != nil {
		return err
	}
	if err := putAll(ctx, r.regions, keyName, sealed); err != nil {
		return err
	}
	oldIndex, err := r.listAll(ctx, "index/")
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	ids := r.identities()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, packs := range replaceIndex {
		g.Go(func() error {
			data, err := crypt.Seal(encodeIndex(packs), recipients)
			if err != nil {
				return err
			}
			return putAll(gctx, r.regions, indexName(objectHash(data)), data)
		})
	}
	for name := range oldIndex {
		if replaceIndex != nil {
			break
		}
		g.Go(func() error {
			packs, err := r.readIndexFile(gctx, name, ids)
			if err != nil {
				return err
			}
			data, err := crypt.Seal(encodeIndex(packs), recipients)
			if err != nil {
				return err
			}
			return putAll(gctx, r.regions, indexName(objectHash(data)), data)
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("repo: re-seal index files: %w", err)
	}
	cfg.Keys = keyName
	cfg.Serial++
	cfgData, err := encodeConfig(cfg, secrets)
	if err != nil {
		return err
	}
	if err := putAll(ctx, r.regions, "config", cfgData); err != nil {
		return err
	}
	oldKeys, err := r.listAll(ctx, "keys/")
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	for _, reg := range r.regions {
		for name := range oldKeys {
			if name != keyName {
				reg.Backend.Delete(ctx, name)
			}
		}
		for name := range oldIndex {
			reg.Backend.Delete(ctx, name)
		}
	}
	r.cfg, r.secrets = cfg, secrets
	return nil
}
