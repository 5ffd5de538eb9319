// Package awsconf is the AWS part of sinks' configuration: region,
// credentials, an optional role to assume and endpoint overrides, resolved
// with aws-sdk-go-v2, and a SigV4-signing HTTP transport for services that
// are reached through plain HTTP clients (Amazon OpenSearch Service).
//
// Credentials come from the SDK's default chain, in its order: environment
// variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN),
// the shared config and credentials files (AWS_PROFILE), web identity
// (IRSA: AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE), ECS container
// credentials and the EC2 instance role. With role_arn, those credentials
// assume the role through STS. Credentials are never logged.
package awsconf

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// Config is the AWS part of a sink's configuration.
type Config struct {
	// Region is required unless the environment or shared config has one.
	Region string `yaml:"region"`
	// RoleARN is a role to assume on top of the default chain.
	RoleARN     string `yaml:"role_arn"`
	ExternalID  string `yaml:"external_id"`
	SessionName string `yaml:"role_session_name"`
	// Endpoint overrides the service's endpoint (LocalStack).
	Endpoint string `yaml:"endpoint"`
	// STSEndpoint overrides the endpoint of STS for role_arn.
	STSEndpoint string `yaml:"sts_endpoint"`
}

var roleARN = regexp.MustCompile(`^arn:aws[a-z-]*:iam::\d{12}:role/.+$`)

// Validate reports the first unusable field as "field: problem".
func (c Config) Validate() error {
	if c.RoleARN != "" && !roleARN.MatchString(c.RoleARN) {
		return fmt.Errorf("role_arn: %q is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)", c.RoleARN)
	}
	if c.ExternalID != "" && c.RoleARN == "" {
		return errors.New("external_id: needs role_arn")
	}
	for _, e := range []struct{ name, v string }{{"endpoint", c.Endpoint}, {"sts_endpoint", c.STSEndpoint}} {
		if e.v == "" {
			continue
		}
		u, err := url.Parse(e.v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s: %q is not an http(s) URL", e.name, e.v)
		}
	}
	return nil
}

// Load resolves the region and the credential chain.
func (c Config) Load(ctx context.Context) (aws.Config, error) {
	var opts []func(*config.LoadOptions) error
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws config: %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, errors.New("region: not set and not found in the environment (AWS_REGION) or shared config")
	}
	if c.RoleARN != "" {
		client := sts.NewFromConfig(cfg, func(o *sts.Options) {
			if c.STSEndpoint != "" {
				o.BaseEndpoint = aws.String(c.STSEndpoint)
			}
		})
		session := c.SessionName
		if session == "" {
			session = "sluice"
		}
		provider := stscreds.NewAssumeRoleProvider(client, c.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = session
			if c.ExternalID != "" {
				o.ExternalID = aws.String(c.ExternalID)
			}
		})
		cfg.Credentials = aws.NewCredentialsCache(provider)
	}
	if c.Endpoint != "" {
		cfg.BaseEndpoint = aws.String(c.Endpoint)
	}
	return cfg, nil
}
