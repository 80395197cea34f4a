//! An AWS operation the exporter may call, as a data row. Each service declares its own rows
//! next to its calls; the registry in `services` collects them for the IAM policy test, the
//! zero-initialised call counters and the API budget, which reads each row's bucket.

/// One callable AWS operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Operation {
    /// The `service` label, as the SDK names the service (lower case).
    pub service: &'static str,
    /// The API operation name, the `operation` label.
    pub name: &'static str,
    /// The IAM action the call needs; `None` when it needs none.
    pub iam_action: Option<&'static str>,
    /// AWS's token bucket for this operation.
    pub bucket: AwsBucket,
}

/// AWS's token bucket for one operation (AWS service quotas): size and refill per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AwsBucket {
    pub size: f64,
    pub refill_per_sec: f64,
    /// (size, refill per second) where AWS grants more in us-east-1, us-west-2 and eu-west-1.
    pub big_regions: Option<(f64, f64)>,
}

impl AwsBucket {
    /// The same bucket in every region.
    pub const fn flat(size: f64, refill_per_sec: f64) -> Self {
        Self {
            size,
            refill_per_sec,
            big_regions: None,
        }
    }
}

impl Operation {
    /// AWS's token bucket for this operation in `region`: (bucket size, refill per second).
    pub fn aws_bucket(&self, region: &str) -> (f64, f64) {
        let big_region = matches!(region, "us-east-1" | "us-west-2" | "eu-west-1");
        match self.bucket.big_regions {
            Some(big) if big_region => big,
            _ => (self.bucket.size, self.bucket.refill_per_sec),
        }
    }
}

/// The call every target makes once to learn its account id; needs no IAM permission.
pub const GET_CALLER_IDENTITY: Operation = Operation {
    service: "sts",
    name: "GetCallerIdentity",
    iam_action: None,
    bucket: AwsBucket::flat(20.0, 5.0),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn larger_buckets_apply_only_in_the_big_regions() {
        let op = Operation {
            service: "x",
            name: "List",
            iam_action: Some("x:List"),
            bucket: AwsBucket {
                size: 100.0,
                refill_per_sec: 2.0,
                big_regions: Some((200.0, 5.0)),
            },
        };
        assert_eq!(op.aws_bucket("us-east-1"), (200.0, 5.0));
        assert_eq!(op.aws_bucket("ap-south-1"), (100.0, 2.0));
        assert_eq!(GET_CALLER_IDENTITY.aws_bucket("us-east-1"), (20.0, 5.0));
    }
}
