#!/bin/sh
# Creates, in LocalStack, what sluice's AWS sinks write to: the S3 bucket of
# the s3 sink, and the Firehose delivery stream (with its S3 bucket) of the
# firehose sink. CloudWatch log groups sluice creates itself
# (auto_create_group). AWS_ENDPOINT_URL points the AWS CLI at LocalStack.
set -eu

bucket() {
    aws s3api head-bucket --bucket "$1" 2>/dev/null || aws s3api create-bucket --bucket "$1" >/dev/null
    echo "bucket $1 ready"
}

bucket sluice-archive
bucket sluice-firehose

if ! aws firehose describe-delivery-stream --delivery-stream-name sluice-logs >/dev/null 2>&1; then
    aws firehose create-delivery-stream \
        --delivery-stream-name sluice-logs \
        --delivery-stream-type DirectPut \
        --extended-s3-destination-configuration \
        'RoleARN=arn:aws:iam::000000000000:role/firehose-to-s3,BucketARN=arn:aws:s3:::sluice-firehose,Prefix=firehose/,BufferingHints={SizeInMBs=1,IntervalInSeconds=60}' >/dev/null
fi
i=0
until aws firehose describe-delivery-stream --delivery-stream-name sluice-logs \
        --query DeliveryStreamDescription.DeliveryStreamStatus --output text | grep -q ACTIVE; do
    i=$((i + 1))
    if [ "$i" -ge 60 ]; then
        echo "delivery stream sluice-logs not ACTIVE after 60s" >&2
        exit 1
    fi
    sleep 1
done
echo "delivery stream sluice-logs ready"
