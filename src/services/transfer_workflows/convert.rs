//! SDK types to plain observations. Pure functions, no I/O.

use aws_sdk_transfer::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_transfer::types::{
    ExecutionStatus, ExecutionStepResult, ListedExecution, ListedWorkflow,
};

use crate::services::transfer_workflows::state::{
    DescribeObs, ExecStatus, ListedExec, StepErrorObs, StepList, WorkflowObs,
};

/// AWS's SCREAMING_SNAKE enum values as label values: `PERMISSION_DENIED` -> `permission_denied`.
pub fn label(aws: &str) -> String {
    aws.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// An unknown status (a newer API than this SDK) is treated as in progress: it is listed, so it runs.
pub fn status(s: Option<&ExecutionStatus>) -> ExecStatus {
    match s {
        Some(ExecutionStatus::HandlingException) => ExecStatus::HandlingException,
        Some(ExecutionStatus::Exception) => ExecStatus::Exception,
        Some(ExecutionStatus::Completed) => ExecStatus::Completed,
        _ => ExecStatus::InProgress,
    }
}

/// `None` for an entry without an id (the model makes every field optional).
pub fn workflow(w: &ListedWorkflow) -> Option<WorkflowObs> {
    Some(WorkflowObs {
        id: w.workflow_id()?.to_owned(),
        description: w.description().unwrap_or_default().to_owned(),
    })
}

pub fn listed_execution(e: &ListedExecution) -> Option<ListedExec> {
    Some(ListedExec {
        id: e.execution_id()?.to_owned(),
        status: status(e.status()),
    })
}

fn step_errors(list: StepList, steps: &[ExecutionStepResult], out: &mut Vec<StepErrorObs>) {
    for (index, step) in steps.iter().enumerate() {
        let Some(error) = step.error() else { continue };
        out.push(StepErrorObs {
            list,
            index,
            step_type: step
                .step_type()
                .map_or_else(|| "unknown".to_owned(), |t| label(t.as_str())),
            error_type: label(error.r#type().as_str()),
        });
    }
}

pub fn describe(out: &DescribeExecutionOutput) -> Option<DescribeObs> {
    let e = out.execution()?;
    let mut errors = Vec::new();
    if let Some(results) = e.results() {
        step_errors(StepList::Steps, results.steps(), &mut errors);
        step_errors(
            StepList::OnExceptionSteps,
            results.on_exception_steps(),
            &mut errors,
        );
    }
    Some(DescribeObs {
        id: e.execution_id()?.to_owned(),
        status: status(e.status()),
        step_errors: errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_transfer::types::{
        DescribedExecution, ExecutionError, ExecutionErrorType, ExecutionResults, WorkflowStepType,
    };

    #[test]
    fn labels_are_lower_snake_case() {
        assert_eq!(label("PERMISSION_DENIED"), "permission_denied");
        assert_eq!(label("CUSTOM"), "custom");
        assert_eq!(label("New-Thing"), "new_thing");
    }

    #[test]
    fn describe_output_yields_failed_steps_of_both_lists() {
        let step = |t: WorkflowStepType, e: Option<ExecutionErrorType>| {
            ExecutionStepResult::builder()
                .step_type(t)
                .set_error(e.map(|e| {
                    ExecutionError::builder()
                        .r#type(e)
                        .message("m")
                        .build()
                        .unwrap()
                }))
                .build()
        };
        let out = DescribeExecutionOutput::builder()
            .workflow_id("w-1")
            .execution(
                DescribedExecution::builder()
                    .execution_id("e-1")
                    .status(ExecutionStatus::HandlingException)
                    .results(
                        ExecutionResults::builder()
                            .steps(step(WorkflowStepType::Tag, None))
                            .steps(step(
                                WorkflowStepType::Copy,
                                Some(ExecutionErrorType::PermissionDenied),
                            ))
                            .on_exception_steps(step(
                                WorkflowStepType::Custom,
                                Some(ExecutionErrorType::Timeout),
                            ))
                            .build(),
                    )
                    .build(),
            )
            .build()
            .unwrap();
        let obs = describe(&out).unwrap();
        assert_eq!(obs.status, ExecStatus::HandlingException);
        assert_eq!(
            obs.step_errors,
            vec![
                StepErrorObs {
                    list: StepList::Steps,
                    index: 1,
                    step_type: "copy".into(),
                    error_type: "permission_denied".into()
                },
                StepErrorObs {
                    list: StepList::OnExceptionSteps,
                    index: 0,
                    step_type: "custom".into(),
                    error_type: "timeout".into()
                },
            ]
        );
    }
}
