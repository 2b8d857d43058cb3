//! Skills (`/v1/skills`): uploaded directories led by a `SKILL.md`, and their versions.

use serde::{Deserialize, Serialize};

use crate::common::Timestamp;
use crate::literal;

literal!(SkillTag = "skill");
literal!(SkillDeletedTag = "skill_deleted");
literal!(SkillVersionTag = "skill_version");
literal!(SkillVersionDeletedTag = "skill_version_deleted");

/// `BetaSkillSource.type`: where a skill comes from. Uploads are always `custom`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SkillSourceType {
    Custom,
    Anthropic,
    AnthropicExample,
    Plugin,
}

/// `BetaSkillSource` response object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SkillSource {
    #[serde(rename = "type")]
    pub kind: SkillSourceType,
}

/// `BetaSkill` response object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Skill {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: SkillTag,
    pub display_name: String,
    /// The newest version: what `latest` resolves to. A skill always has one.
    pub latest_version_id: String,
    pub source: SkillSource,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// `BetaDeletedSkill` response object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeletedSkill {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: SkillDeletedTag,
}

/// `BetaSkillVersion` response object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SkillVersion {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: SkillVersionTag,
    pub skill_id: String,
    /// The skill's kebab-case slug from the `SKILL.md` front matter; the same for every version.
    pub name: String,
    /// The `SKILL.md` front matter `description` of this version.
    pub description: String,
    pub created_at: Timestamp,
}

/// `BetaDeletedSkillVersion` response object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeletedSkillVersion {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: SkillVersionDeletedTag,
}
