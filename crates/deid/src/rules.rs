//! Which attributes go, which UIDs are replaced, which facts are kept.
//!
//! Tables are (group, element, keyword); a unit test checks every keyword against the
//! standard dictionary so a typo in a tag number cannot silently keep an identifier.

use serde::{Deserialize, Serialize};

/// Which rule set is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// DESIGN.md's list + DICOM PS3.15 Annex E Basic Application Level Confidentiality
    /// Profile with "Retain Patient Characteristics" and "Retain Longitudinal Temporal
    /// Information with Full Dates" (dates/times are kept, age/sex/size/weight kept).
    #[default]
    Basic,
    /// Exactly DESIGN.md's privacy rules (32 attributes, private, overlays, UIDs).
    Seed,
}

/// The 32 attributes of DESIGN.md "Privacy rules": removed at every depth in every profile.
pub(crate) const DESIGN_LIST: &[(u16, u16, &str)] = &[
    (0x0010, 0x0010, "PatientName"),
    (0x0010, 0x0020, "PatientID"),
    (0x0010, 0x0030, "PatientBirthDate"),
    (0x0010, 0x0032, "PatientBirthTime"),
    (0x0010, 0x1040, "PatientAddress"),
    (0x0010, 0x2154, "PatientTelephoneNumbers"),
    (0x0010, 0x1060, "PatientMotherBirthName"),
    (0x0010, 0x1000, "OtherPatientIDs"),
    (0x0010, 0x1001, "OtherPatientNames"),
    (0x0008, 0x0090, "ReferringPhysicianName"),
    (0x0008, 0x0092, "ReferringPhysicianAddress"),
    (0x0008, 0x0094, "ReferringPhysicianTelephoneNumbers"),
    (0x0008, 0x1048, "PhysiciansOfRecord"),
    (0x0008, 0x1050, "PerformingPhysicianName"),
    (0x0008, 0x1070, "OperatorsName"),
    (0x0008, 0x1060, "NameOfPhysiciansReadingStudy"),
    (0x0032, 0x1032, "RequestingPhysician"),
    (0x0010, 0x2297, "ResponsiblePerson"),
    (0x0008, 0x0050, "AccessionNumber"),
    (0x0020, 0x0010, "StudyID"),
    (0x0008, 0x0080, "InstitutionName"),
    (0x0008, 0x0081, "InstitutionAddress"),
    (0x0008, 0x1040, "InstitutionalDepartmentName"),
    (0x0008, 0x1010, "StationName"),
    (0x0018, 0x1000, "DeviceSerialNumber"),
    (0x0008, 0x1030, "StudyDescription"),
    (0x0008, 0x103E, "SeriesDescription"),
    (0x0018, 0x1030, "ProtocolName"),
    (0x0032, 0x1060, "RequestedProcedureDescription"),
    (0x0032, 0x1030, "ReasonForStudy"),
    (0x0008, 0x1080, "AdmittingDiagnosesDescription"),
    (0x0020, 0x4000, "ImageComments"),
];

/// PS3.15 Table E.1-1 attributes whose Basic-profile action is X, Z, D or X/Z/D and that
/// the two retain options do not keep, beyond DESIGN_LIST. Removal is used for D/Z too
/// (DESIGN asks for removal; dummies would only add bytes to audit). UID (U) actions are
/// handled generically by VR, dates/times are retained (Full Dates option), patient
/// characteristics (age, sex, size, weight, ethnic group, smoking/pregnancy status) too.
pub(crate) const BASIC_EXTRA: &[(u16, u16, &str)] = &[
    (0x0008, 0x0014, "InstanceCreatorUID"),
    (0x0008, 0x0054, "RetrieveAETitle"),
    (0x0008, 0x0055, "StationAETitle"),
    (0x0008, 0x0082, "InstitutionCodeSequence"),
    (0x0008, 0x0096, "ReferringPhysicianIdentificationSequence"),
    (0x0008, 0x0201, "TimezoneOffsetFromUTC"),
    (0x0008, 0x1032, "ProcedureCodeSequence"),
    (0x0008, 0x1049, "PhysiciansOfRecordIdentificationSequence"),
    (0x0008, 0x1052, "PerformingPhysicianIdentificationSequence"),
    (0x0008, 0x1062, "PhysiciansReadingStudyIdentificationSequence"),
    (0x0008, 0x1072, "OperatorIdentificationSequence"),
    (0x0008, 0x1084, "AdmittingDiagnosesCodeSequence"),
    (0x0008, 0x1110, "ReferencedStudySequence"),
    (0x0008, 0x1111, "ReferencedPerformedProcedureStepSequence"),
    (0x0008, 0x1120, "ReferencedPatientSequence"),
    (0x0008, 0x1250, "RelatedSeriesSequence"),
    (0x0008, 0x2111, "DerivationDescription"),
    (0x0008, 0x4000, "IdentifyingComments"),
    (0x0010, 0x0021, "IssuerOfPatientID"),
    (0x0010, 0x0024, "IssuerOfPatientIDQualifiersSequence"),
    (0x0010, 0x0033, "PatientBirthDateInAlternativeCalendar"),
    (0x0010, 0x0034, "PatientDeathDateInAlternativeCalendar"),
    (0x0010, 0x0035, "PatientAlternativeCalendar"),
    (0x0010, 0x0050, "PatientInsurancePlanCodeSequence"),
    (0x0010, 0x0101, "PatientPrimaryLanguageCodeSequence"),
    (0x0010, 0x0102, "PatientPrimaryLanguageModifierCodeSequence"),
    (0x0010, 0x1002, "OtherPatientIDsSequence"),
    (0x0010, 0x1005, "PatientBirthName"),
    (0x0010, 0x1050, "InsurancePlanIdentification"),
    (0x0010, 0x1080, "MilitaryRank"),
    (0x0010, 0x1081, "BranchOfService"),
    (0x0010, 0x1090, "MedicalRecordLocator"),
    (0x0010, 0x1100, "ReferencedPatientPhotoSequence"),
    (0x0010, 0x2000, "MedicalAlerts"),
    (0x0010, 0x2110, "Allergies"),
    (0x0010, 0x2150, "CountryOfResidence"),
    (0x0010, 0x2152, "RegionOfResidence"),
    (0x0010, 0x2180, "Occupation"),
    (0x0010, 0x21B0, "AdditionalPatientHistory"),
    (0x0010, 0x21F0, "PatientReligiousPreference"),
    (0x0010, 0x2299, "ResponsibleOrganization"),
    (0x0010, 0x4000, "PatientComments"),
    (0x0018, 0x0010, "ContrastBolusAgent"),
    (0x0018, 0x1004, "PlateID"),
    (0x0018, 0x1005, "GeneratorID"),
    (0x0018, 0x1007, "CassetteID"),
    (0x0018, 0x1008, "GantryID"),
    (0x0018, 0x1400, "AcquisitionDeviceProcessingDescription"),
    (0x0018, 0x4000, "AcquisitionComments"),
    (0x0018, 0x700A, "DetectorID"),
    (0x0018, 0x9424, "AcquisitionProtocolDescription"),
    (0x0018, 0xA003, "ContributionDescription"),
    (0x0020, 0x3401, "ModifyingDeviceID"),
    (0x0020, 0x3404, "ModifyingDeviceManufacturer"),
    (0x0020, 0x3406, "ModifiedImageDescription"),
    (0x0020, 0x9158, "FrameComments"),
    (0x0028, 0x4000, "ImagePresentationComments"),
    (0x0032, 0x0012, "StudyIDIssuer"),
    (0x0032, 0x1020, "ScheduledStudyLocation"),
    (0x0032, 0x1021, "ScheduledStudyLocationAETitle"),
    (0x0032, 0x1033, "RequestingService"),
    (0x0032, 0x1064, "RequestedProcedureCodeSequence"),
    (0x0032, 0x1066, "ReasonForVisit"),
    (0x0032, 0x1067, "ReasonForVisitCodeSequence"),
    (0x0032, 0x1070, "RequestedContrastAgent"),
    (0x0032, 0x4000, "StudyComments"),
    (0x0038, 0x0010, "AdmissionID"),
    (0x0038, 0x0011, "IssuerOfAdmissionID"),
    (0x0038, 0x0014, "IssuerOfAdmissionIDSequence"),
    (0x0038, 0x001E, "ScheduledPatientInstitutionResidence"),
    (0x0038, 0x0040, "DischargeDiagnosisDescription"),
    (0x0038, 0x0050, "SpecialNeeds"),
    (0x0038, 0x0060, "ServiceEpisodeID"),
    (0x0038, 0x0061, "IssuerOfServiceEpisodeID"),
    (0x0038, 0x0062, "ServiceEpisodeDescription"),
    (0x0038, 0x0064, "IssuerOfServiceEpisodeIDSequence"),
    (0x0038, 0x0300, "CurrentPatientLocation"),
    (0x0038, 0x0400, "PatientInstitutionResidence"),
    (0x0038, 0x0500, "PatientState"),
    (0x0038, 0x1234, "ReferencedPatientAliasSequence"),
    (0x0038, 0x4000, "VisitComments"),
    (0x0040, 0x0001, "ScheduledStationAETitle"),
    (0x0040, 0x0006, "ScheduledPerformingPhysicianName"),
    (0x0040, 0x0007, "ScheduledProcedureStepDescription"),
    (0x0040, 0x0009, "ScheduledProcedureStepID"),
    (0x0040, 0x000B, "ScheduledPerformingPhysicianIdentificationSequence"),
    (0x0040, 0x0010, "ScheduledStationName"),
    (0x0040, 0x0011, "ScheduledProcedureStepLocation"),
    (0x0040, 0x0012, "PreMedication"),
    (0x0040, 0x0241, "PerformedStationAETitle"),
    (0x0040, 0x0242, "PerformedStationName"),
    (0x0040, 0x0243, "PerformedLocation"),
    (0x0040, 0x0253, "PerformedProcedureStepID"),
    (0x0040, 0x0254, "PerformedProcedureStepDescription"),
    (0x0040, 0x0275, "RequestAttributesSequence"),
    (0x0040, 0x0280, "CommentsOnThePerformedProcedureStep"),
    (0x0040, 0x0310, "CommentsOnRadiationDose"),
    (0x0040, 0x0512, "ContainerIdentifier"),
    (0x0040, 0x0513, "IssuerOfTheContainerIdentifierSequence"),
    (0x0040, 0x0551, "SpecimenIdentifier"),
    (0x0040, 0x0555, "AcquisitionContextSequence"),
    (0x0040, 0x0562, "IssuerOfTheSpecimenIdentifierSequence"),
    (0x0040, 0x0600, "SpecimenShortDescription"),
    (0x0040, 0x0602, "SpecimenDetailedDescription"),
    (0x0040, 0x06FA, "SlideIdentifier"),
    (0x0040, 0x1001, "RequestedProcedureID"),
    (0x0040, 0x1002, "ReasonForTheRequestedProcedure"),
    (0x0040, 0x1004, "PatientTransportArrangements"),
    (0x0040, 0x1005, "RequestedProcedureLocation"),
    (0x0040, 0x1010, "NamesOfIntendedRecipientsOfResults"),
    (0x0040, 0x1011, "IntendedRecipientsOfResultsIdentificationSequence"),
    (0x0040, 0x1101, "PersonIdentificationCodeSequence"),
    (0x0040, 0x1102, "PersonAddress"),
    (0x0040, 0x1103, "PersonTelephoneNumbers"),
    (0x0040, 0x1400, "RequestedProcedureComments"),
    (0x0040, 0x2001, "ReasonForTheImagingServiceRequest"),
    (0x0040, 0x2008, "OrderEnteredBy"),
    (0x0040, 0x2009, "OrderEntererLocation"),
    (0x0040, 0x2010, "OrderCallbackPhoneNumber"),
    (0x0040, 0x2016, "PlacerOrderNumberImagingServiceRequest"),
    (0x0040, 0x2017, "FillerOrderNumberImagingServiceRequest"),
    (0x0040, 0x2400, "ImagingServiceRequestComments"),
    (0x0040, 0x3001, "ConfidentialityConstraintOnPatientDataDescription"),
    (0x0040, 0x4025, "ScheduledStationNameCodeSequence"),
    (0x0040, 0x4027, "ScheduledStationGeographicLocationCodeSequence"),
    (0x0040, 0x4028, "PerformedStationNameCodeSequence"),
    (0x0040, 0x4030, "PerformedStationGeographicLocationCodeSequence"),
    (0x0040, 0x4034, "ScheduledHumanPerformersSequence"),
    (0x0040, 0x4035, "ActualHumanPerformersSequence"),
    (0x0040, 0x4036, "HumanPerformerOrganization"),
    (0x0040, 0x4037, "HumanPerformerName"),
    (0x0040, 0xA027, "VerifyingOrganization"),
    (0x0040, 0xA073, "VerifyingObserverSequence"),
    (0x0040, 0xA075, "VerifyingObserverName"),
    (0x0040, 0xA078, "AuthorObserverSequence"),
    (0x0040, 0xA07A, "ParticipantSequence"),
    (0x0040, 0xA07C, "CustodialOrganizationSequence"),
    (0x0040, 0xA088, "VerifyingObserverIdentificationCodeSequence"),
    (0x0040, 0xA123, "PersonName"),
    (0x0040, 0xA730, "ContentSequence"),
    (0x0050, 0x0020, "DeviceDescription"),
    (0x0070, 0x0084, "ContentCreatorName"),
    (0x0070, 0x0086, "ContentCreatorIdentificationCodeSequence"),
    (0x0088, 0x0200, "IconImageSequence"),
    (0x0088, 0x0904, "TopicTitle"),
    (0x0088, 0x0906, "TopicSubject"),
    (0x0088, 0x0910, "TopicAuthor"),
    (0x0088, 0x0912, "TopicKeywords"),
    (0x0400, 0x0100, "DigitalSignatureUID"),
    (0x0400, 0x0402, "ReferencedDigitalSignatureSequence"),
    (0x0400, 0x0403, "ReferencedSOPInstanceMACSequence"),
    (0x0400, 0x0404, "MAC"),
    (0x0400, 0x0550, "ModifiedAttributesSequence"),
    (0x0400, 0x0561, "OriginalAttributesSequence"),
    (0x2030, 0x0020, "TextString"),
    (0x3006, 0x0002, "StructureSetLabel"),
    (0x3006, 0x0004, "StructureSetName"),
    (0x300E, 0x0008, "ReviewerName"),
    (0x4000, 0x0010, "Arbitrary"),
    (0x4000, 0x4000, "TextComments"),
    (0x4008, 0x0042, "ResultsIDIssuer"),
    (0x4008, 0x0102, "InterpretationRecorder"),
    (0x4008, 0x010A, "InterpretationTranscriber"),
    (0x4008, 0x010B, "InterpretationText"),
    (0x4008, 0x010C, "InterpretationAuthor"),
    (0x4008, 0x0111, "InterpretationApproverSequence"),
    (0x4008, 0x0114, "PhysicianApprovingInterpretation"),
    (0x4008, 0x0115, "InterpretationDiagnosisDescription"),
    (0x4008, 0x0118, "ResultsDistributionListSequence"),
    (0x4008, 0x0119, "DistributionName"),
    (0x4008, 0x011A, "DistributionAddress"),
    (0x4008, 0x0202, "InterpretationIDIssuer"),
    (0x4008, 0x0300, "Impressions"),
    (0x4008, 0x4000, "ResultsComments"),
    (0xFFFA, 0xFFFA, "DigitalSignaturesSequence"),
    (0xFFFC, 0xFFFC, "DataSetTrailingPadding"),
];

/// UI attributes that name a class, a syntax or a coding scheme, never an instance:
/// replacing them would break the file, and they identify nobody.
pub(crate) const KEEP_UID_TAGS: &[(u16, u16)] = &[
    (0x0002, 0x0002), // MediaStorageSOPClassUID
    (0x0002, 0x0010), // TransferSyntaxUID
    (0x0002, 0x0012), // ImplementationClassUID
    (0x0004, 0x1510), // ReferencedSOPClassUIDInFile
    (0x0004, 0x1512), // ReferencedTransferSyntaxUIDInFile
    (0x0008, 0x0016), // SOPClassUID
    (0x0008, 0x001A), // RelatedGeneralSOPClassUID
    (0x0008, 0x001B), // OriginalSpecializedSOPClassUID
    (0x0008, 0x010C), // CodingSchemeUID
    (0x0008, 0x0117), // ContextUID
    (0x0008, 0x0118), // MappingResourceUID
    (0x0008, 0x1150), // ReferencedSOPClassUID
    (0x0008, 0x9123), // CreatorVersionUID (software version, not an instance)
];

#[cfg(test)]
fn in_table(table: &[(u16, u16, &'static str)], g: u16, e: u16) -> Option<&'static str> {
    table
        .iter()
        .find(|(tg, te, _)| *tg == g && *te == e)
        .map(|(_, _, k)| *k)
}

/// `table` as (tag, keyword) sorted by tag, first entry of a tag kept: the lookups of
/// [`in_table`] by binary search (every element of every file is looked up).
fn sorted(table: &[(u16, u16, &'static str)]) -> Vec<(u32, &'static str)> {
    let mut v: Vec<(u32, &'static str)> = table
        .iter()
        .map(|(g, e, k)| ((u32::from(*g) << 16) | u32::from(*e), *k))
        .collect();
    v.sort_by_key(|(t, _)| *t); // stable: equal tags keep table order
    v.dedup_by_key(|(t, _)| *t); // keeps the first of equal tags, as `in_table` finds it
    v
}

fn lookup(table: &[(u32, &'static str)], g: u16, e: u16) -> Option<&'static str> {
    let t = (u32::from(g) << 16) | u32::from(e);
    table.binary_search_by_key(&t, |(k, _)| *k).ok().map(|i| table[i].1)
}

fn design_sorted() -> &'static [(u32, &'static str)] {
    static T: std::sync::OnceLock<Vec<(u32, &'static str)>> = std::sync::OnceLock::new();
    T.get_or_init(|| sorted(DESIGN_LIST))
}

fn basic_sorted() -> &'static [(u32, &'static str)] {
    static T: std::sync::OnceLock<Vec<(u32, &'static str)>> = std::sync::OnceLock::new();
    T.get_or_init(|| sorted(BASIC_EXTRA))
}

pub(crate) fn keep_uid(g: u16, e: u16) -> bool {
    KEEP_UID_TAGS.iter().any(|(tg, te)| *tg == g && *te == e)
}

/// A UID from the DICOM registry (SOP classes, transfer syntaxes, well-known frames of
/// reference, coding schemes...): shared by every file in the world, so not identifying.
pub(crate) fn is_registry_uid(uid: &str) -> bool {
    uid.starts_with("1.2.840.10008.")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Keep,
    /// Removed; the keyword is what the report counts.
    Remove(RemoveKind),
    /// Silently dropped structural element (group lengths): not identifying, but
    /// invalid once the group's content changes.
    DropStructural,
    ReplaceUid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemoveKind {
    Listed(&'static str),
    Private,
    Overlay,
    /// Retired curve data (50xx), removed by the Basic profile.
    Curve,
}

pub(crate) fn action(profile: Profile, g: u16, e: u16, is_ui: bool) -> Action {
    if g % 2 == 1 {
        return Action::Remove(RemoveKind::Private);
    }
    if (0x6000..=0x60FF).contains(&g) {
        return Action::Remove(RemoveKind::Overlay);
    }
    if g == 0x0012 && matches!(e, 0x0062..=0x0064) {
        // de-identification markers: rewritten by this crate
        return Action::DropStructural;
    }
    if g == 0xFFFE || g == 0x0000 {
        // delimitation-group tags are encoded without a VR, and command elements do not
        // belong in a stored data set: neither can be re-encoded faithfully, neither is needed
        return Action::DropStructural;
    }
    if e == 0x0000 || g == 0x0002 {
        // group lengths, and file-meta elements misplaced in the body (meta is rebuilt)
        return Action::DropStructural;
    }
    if let Some(k) = lookup(design_sorted(), g, e) {
        return Action::Remove(RemoveKind::Listed(k));
    }
    if profile == Profile::Basic {
        if (0x5000..=0x50FF).contains(&g) {
            return Action::Remove(RemoveKind::Curve);
        }
        if let Some(k) = lookup(basic_sorted(), g, e) {
            return Action::Remove(RemoveKind::Listed(k));
        }
    }
    if is_ui && !keep_uid(g, e) {
        return Action::ReplaceUid;
    }
    Action::Keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::Tag;
    use dicom_core::dictionary::DataDictionary;
    use dicom_dictionary_std::StandardDataDictionary;

    #[test]
    fn table_keywords_match_dictionary() {
        let mut bad = Vec::new();
        for (g, e, k) in DESIGN_LIST.iter().chain(BASIC_EXTRA.iter()) {
            let alias = StandardDataDictionary.by_tag(Tag(*g, *e)).map(|x| x.alias);
            // retired and absent from dicom-rs's dictionary; the tag number is from PS3.15
            let known_absent = (*g, *e) == (0x0038, 0x1234) && alias.is_none();
            if alias != Some(*k) && !known_absent {
                bad.push(format!("({g:04X},{e:04X}) {k} != {alias:?}"));
            }
        }
        assert!(bad.is_empty(), "{bad:#?}");
        assert_eq!(DESIGN_LIST.len(), 32);
    }

    #[test]
    fn sorted_lookup_equals_table_scan() {
        for table in [DESIGN_LIST, BASIC_EXTRA] {
            let s = sorted(table);
            for (g, e, _) in table {
                for (dg, de) in [(0, 0), (0, 1), (1, 0), (0, 0xFFFF)] {
                    let (g, e) = (g.wrapping_add(dg), e.wrapping_add(de));
                    assert_eq!(lookup(&s, g, e), in_table(table, g, e), "({g:04X},{e:04X})");
                }
            }
        }
    }
}
