//! One target as validated: the account (directly, or through a role) and region polled.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub name: String,
    pub region: Option<String>,
    pub role: Option<RoleConfig>,
    pub endpoint_url: Option<String>,
    /// Where STS goes when it must not follow `endpoint_url` (an emulator without STS).
    pub sts_endpoint_url: Option<String>,
    /// The account id, when neither STS nor the resources' ARNs can tell it.
    pub account_id: Option<String>,
}

impl TargetConfig {
    /// A target on the default credentials and region, or `region`.
    pub fn new(name: &str, region: Option<&str>) -> Self {
        Self {
            name: name.into(),
            region: region.map(str::to_owned),
            role: None,
            endpoint_url: None,
            sts_endpoint_url: None,
            account_id: None,
        }
    }

    /// The account the target polls, when the file says: `account_id`, else the role's account.
    pub fn known_account(&self) -> Option<&str> {
        self.account_id
            .as_deref()
            .or_else(|| self.role.as_ref().and_then(|r| role_account(&r.arn)))
    }
}

/// The account id of an IAM role ARN (`arn:PARTITION:iam::ACCOUNT:role/NAME`).
pub fn role_account(arn: &str) -> Option<&str> {
    let account = arn.split(':').nth(4)?;
    is_account_id(account).then_some(account)
}

pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleConfig {
    pub arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
}
