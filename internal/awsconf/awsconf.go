// Package awsconf is the AWS part of sinks' configuration: region,
// credentials, an optional role to assume and endpoint overrides, resolved
// with aws-sdk-go-v2, and a SigV4-signing HTTP transport ([Signer]) for
// services reached through plain HTTP clients (Amazon OpenSearch Service,
// OpenSearch Serverless).
//
// # Credentials
//
// [Config.Load] uses the SDK's default credential chain. It picks the first
// source that is configured, in this order, and does not fall back to the
// next one when that source fails:
//
//  1. environment variables: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
//     with AWS_SESSION_TOKEN for temporary credentials;
//  2. web identity, which is IRSA on EKS: AWS_ROLE_ARN with
//     AWS_WEB_IDENTITY_TOKEN_FILE, the token exchanged with STS
//     AssumeRoleWithWebIdentity;
//  3. the shared config and credentials files (~/.aws/config and
//     ~/.aws/credentials, or AWS_CONFIG_FILE and
//     AWS_SHARED_CREDENTIALS_FILE), profile AWS_PROFILE or "default": keys,
//     a web_identity_token_file, SSO or a credential_process, and a
//     role_arn assumed on top of them;
//  4. ECS and EKS Pod Identity container credentials
//     (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or
//     AWS_CONTAINER_CREDENTIALS_FULL_URI);
//  5. the EC2 instance role, from the instance metadata service (disabled
//     with AWS_EC2_METADATA_DISABLED=true).
//
// With role_arn, the credentials of that chain call STS AssumeRole (with
// external_id and role_session_name, "sluice" by default) and the role's
// temporary credentials are used instead; they are cached and refreshed
// shortly before they expire.
//
// The region is the configured one, else AWS_REGION (or AWS_DEFAULT_REGION)
// or the profile's region; there is no other default, and Load fails
// without one.
//
// # Endpoints
//
// endpoint overrides the endpoint of the service a sink talks to (for
// example LocalStack at http://localhost:4566) by setting
// aws.Config.BaseEndpoint, which the clients built from the returned
// configuration use. It does not apply to STS. As the SDK resolves it, a
// service-specific variable (AWS_ENDPOINT_URL_<SERVICE>, for example
// AWS_ENDPOINT_URL_CLOUDWATCH_LOGS) or a services section of the shared
// config still takes precedence over it; without endpoint, the global
// AWS_ENDPOINT_URL applies. The [Signer] does not use it: it signs requests
// to whatever URL its HTTP client sends them to.
//
// sts_endpoint overrides the endpoint of STS for role_arn, and takes
// precedence over AWS_ENDPOINT_URL_STS. The STS calls of the default chain
// itself (web identity, roles of profiles) only honour the SDK's variables,
// AWS_ENDPOINT_URL_STS in particular.
//
// Neither credentials nor signatures are ever logged or part of an error.
package awsconf

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// DefaultSessionName is the role session name when role_session_name is
// not set.
const DefaultSessionName = "sluice"

// expiryWindow is how long before their expiry assumed credentials are
// refreshed, so that a request is never signed with credentials about to
// expire.
const expiryWindow = time.Minute

// Config is the AWS part of a sink's configuration (YAML).
type Config struct {
	// Region is required unless the environment (AWS_REGION) or the shared
	// config has one.
	Region string `yaml:"region"`
	// RoleARN is a role to assume with STS on top of the default chain.
	RoleARN string `yaml:"role_arn"`
	// ExternalID is passed to AssumeRole when the role's trust policy asks
	// for it.
	ExternalID string `yaml:"external_id"`
	// SessionName is the role session name; DefaultSessionName ("sluice")
	// when empty.
	SessionName string `yaml:"role_session_name"`
	// Endpoint overrides the service's endpoint (LocalStack); an http(s)
	// URL.
	Endpoint string `yaml:"endpoint"`
	// STSEndpoint overrides the endpoint of STS for RoleARN; an http(s)
	// URL.
	STSEndpoint string `yaml:"sts_endpoint"`
}

var (
	// regionName is the shape of region names: eu-west-1, us-gov-east-1.
	regionName = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	// roleARN is an IAM role in any partition (aws, aws-cn, aws-us-gov,
	// aws-iso-b, ...), with an optional path.
	roleARN = regexp.MustCompile(`^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/[\w+=,.@/-]+$`)
	// externalID and sessionName are what STS accepts.
	externalID  = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
	sessionName = regexp.MustCompile(`^[\w+=,.@-]+$`)
)

// Validate reports the first unusable field as "<yaml field>: problem".
// It needs no network and no credentials.
func (c Config) Validate() error {
	if c.Region != "" && !regionName.MatchString(c.Region) {
		return fmt.Errorf("region: %q is not a region name (such as eu-west-1)", c.Region)
	}
	if c.RoleARN != "" && !roleARN.MatchString(c.RoleARN) {
		return fmt.Errorf("role_arn: %q is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)", c.RoleARN)
	}
	if c.ExternalID != "" {
		if c.RoleARN == "" {
			return errors.New("external_id: needs role_arn")
		}
		if n := len(c.ExternalID); n < 2 || n > 1224 || !externalID.MatchString(c.ExternalID) {
			return errors.New("external_id: must be 2 to 1224 characters of letters, digits and +=,.@:/-_")
		}
	}
	if n := len(c.SessionName); n > 0 && (n < 2 || n > 64 || !sessionName.MatchString(c.SessionName)) {
		return fmt.Errorf("role_session_name: %q must be 2 to 64 characters of letters, digits and +=,.@-_", c.SessionName)
	}
	if err := checkEndpoint(c.Endpoint); err != nil {
		return fmt.Errorf("endpoint: %w", err)
	}
	if err := checkEndpoint(c.STSEndpoint); err != nil {
		return fmt.Errorf("sts_endpoint: %w", err)
	}
	if c.STSEndpoint != "" && c.RoleARN == "" {
		return errors.New("sts_endpoint: needs role_arn (the default chain's STS calls honour AWS_ENDPOINT_URL_STS)")
	}
	return nil
}

// checkEndpoint accepts an empty string or an absolute http(s) URL.
func checkEndpoint(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	case u.User != nil:
		return errors.New("must not hold credentials")
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q must have no query or fragment", s)
	}
	return nil
}

// Load resolves the region and the default credential chain (see the
// package documentation), then, with RoleARN, wraps the chain in a cached
// STS AssumeRole provider. Credentials are resolved lazily, on the first
// Retrieve: Load itself calls no AWS service.
func (c Config) Load(ctx context.Context) (aws.Config, error) {
	if err := c.Validate(); err != nil {
		return aws.Config{}, err
	}
	var opts []func(*config.LoadOptions) error
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, errors.New("region: not set and not found in the environment (AWS_REGION)")
	}
	if c.RoleARN != "" {
		// Built before BaseEndpoint is set below: endpoint is the
		// service's, never STS's.
		client := sts.NewFromConfig(cfg, func(o *sts.Options) {
			if c.STSEndpoint != "" {
				o.BaseEndpoint = aws.String(c.STSEndpoint)
			}
		})
		session := c.SessionName
		if session == "" {
			session = DefaultSessionName
		}
		provider := stscreds.NewAssumeRoleProvider(client, c.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = session
			if c.ExternalID != "" {
				o.ExternalID = aws.String(c.ExternalID)
			}
		})
		cfg.Credentials = aws.NewCredentialsCache(provider, func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow = expiryWindow
		})
	}
	if c.Endpoint != "" {
		cfg.BaseEndpoint = aws.String(c.Endpoint)
	}
	return cfg, nil
}
