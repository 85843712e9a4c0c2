//! Token-by-token generation with a generation plan ([`cachemir_ir::plan::generation`]): client
//! and server in one process on a [`Client`] backend, the KV cache kept as backend ciphertexts
//! between steps (never decrypted).
//!
//! Each [`Generator::step`]: the client runs the plan's client program on the step's inputs
//! (token ids, and positions where the embedding needs them) and encrypts the results by the
//! plan's input layouts at their declared levels; the server runs the public program on the
//! public inputs (positions, mask), then the plan with the KV-cache states of the previous step;
//! the client decrypts and decodes the logits. The new states replace the old ones in place.

use crate::backend::Client;
use crate::error::VmError;
use crate::report::Report;
use crate::vm::Vm;
use cachemir_ir::plan::{Generation, GenerationError, Plan, TensorRef};
use cachemir_ir::{Graph, Interpreter, IrError, Precision, Tensor};
use std::collections::HashMap;

/// A generation step that failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerationRunError {
    #[error("the plan is not a generation plan (compile it with `cachemirc compile --generation`)")]
    NotGeneration,
    #[error(transparent)]
    Context(#[from] GenerationError),
    #[error("the plan's {which} program: {message}")]
    Program {
        which: &'static str,
        message: String,
    },
    #[error("the plan's {which} program: {source}")]
    Evaluation {
        which: &'static str,
        #[source]
        source: IrError,
    },
    #[error("encrypted input `{0}` is neither computed by the client program nor a state")]
    UnboundInput(String),
    #[error("`{name}`: {message}")]
    Layout { name: String, message: String },
    #[error("the plan has no encrypted output `{0}`")]
    MissingOutput(String),
    #[error("{given} KV-cache states given; the plan has {expected}")]
    States { given: usize, expected: usize },
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("{what}: {message}")]
    Backend { what: String, message: String },
}

/// One step's result.
#[derive(Debug)]
pub struct StepOutput {
    /// The decoded logits (the plan's logits output, row-major, as the model declares it).
    pub logits: Vec<f64>,
    /// What the run observed (instructions, bootstraps, time).
    pub report: Report,
}

/// Parses a plan's client or public program (`None` when the plan has none).
///
/// # Errors
/// [`GenerationRunError::Program`] when the JSON is not a Tensor IR graph.
pub fn parse_program(json: &str, which: &'static str) -> Result<Option<Graph>, GenerationRunError> {
    if json.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(json)
        .map(Some)
        .map_err(|e| GenerationRunError::Program {
            which,
            message: e.to_string(),
        })
}

/// Runs a client or public program on the inputs it declares, taken by name from `inputs`.
///
/// # Errors
/// [`GenerationRunError::Evaluation`] for a missing input or a failing node.
pub fn run_program(
    graph: &Graph,
    inputs: &HashMap<String, Tensor>,
    which: &'static str,
) -> Result<HashMap<String, Tensor>, GenerationRunError> {
    let mut feed = HashMap::new();
    for input in graph.inputs() {
        let name = graph.input_name(input);
        let tensor = inputs
            .get(name)
            .ok_or_else(|| GenerationRunError::Evaluation {
                which,
                source: IrError::MissingInput(name.to_string()),
            })?;
        feed.insert(name.to_string(), tensor.clone());
    }
    Interpreter::new(graph, Precision::F64)
        .run(&feed)
        .map_err(|source| GenerationRunError::Evaluation { which, source })
}

/// Runs a generation plan token by token (see the module documentation).
#[derive(Debug)]
pub struct Generator<'a, B: Client> {
    backend: &'a B,
    plan: &'a Plan,
    generation: Generation,
    client_program: Option<Graph>,
    public_program: Option<Graph>,
    /// Weights by reference; each step adds the public program's outputs.
    tensors: HashMap<TensorRef, Vec<f64>>,
    /// `states[s]`: the ciphertexts of `plan.states[s]`, in the state input's layout.
    states: Vec<Vec<B::Ciphertext>>,
    step: usize,
}

impl<'a, B: Client> Generator<'a, B> {
    /// A generator at step 0 with empty KV caches (encryptions of zeros, removed by the mask).
    /// `weights` holds every weight the plan reads (`TensorRef::Weight`, row-major).
    ///
    /// # Errors
    /// [`GenerationRunError::NotGeneration`], [`GenerationRunError::Program`], and backend
    /// failures encrypting the empty caches.
    pub fn new(
        backend: &'a B,
        plan: &'a Plan,
        weights: HashMap<TensorRef, Vec<f64>>,
    ) -> Result<Self, GenerationRunError> {
        let generation = plan
            .generation
            .clone()
            .ok_or(GenerationRunError::NotGeneration)?;
        let mut states = Vec::with_capacity(plan.states.len());
        for state in &plan.states {
            let io = input(plan, &state.input)?;
            let zeros = vec![0.0; plan.slots];
            let parts = (0..io.layout.ciphertexts())
                .map(|part| {
                    backend
                        .encrypt_at(&zeros, io.level)
                        .map_err(|e| GenerationRunError::Backend {
                            what: format!("encrypting the empty cache `{}` part {part}", io.name),
                            message: e.to_string(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            states.push(parts);
        }
        Ok(Self {
            backend,
            plan,
            generation,
            client_program: parse_program(&plan.client_program, "client")?,
            public_program: parse_program(&plan.public_program, "public")?,
            tensors: weights,
            states,
            step: 0,
        })
    }

    /// Resumes at `step` with these KV-cache states (e.g. from a session).
    ///
    /// # Errors
    /// [`GenerationRunError::States`] when the count differs from the plan's.
    pub fn resume(
        mut self,
        step: usize,
        states: Vec<Vec<B::Ciphertext>>,
    ) -> Result<Self, GenerationRunError> {
        if states.len() != self.plan.states.len() {
            return Err(GenerationRunError::States {
                given: states.len(),
                expected: self.plan.states.len(),
            });
        }
        self.step = step;
        self.states = states;
        Ok(self)
    }

    /// Steps run so far (the next token's position).
    pub fn step_index(&self) -> usize {
        self.step
    }

    /// The KV-cache states after the last step (for a session).
    pub fn states(&self) -> &[Vec<B::Ciphertext>] {
        &self.states
    }

    /// Feeds `token` at the next position and returns the next-token logits.
    ///
    /// # Errors
    /// [`GenerationRunError::Context`] when the context is full; program, layout, VM and
    /// backend failures otherwise (the states are unchanged on error).
    pub fn step(&mut self, token: i64) -> Result<StepOutput, GenerationRunError> {
        let plan = self.plan;
        let raw: HashMap<String, Tensor> = self
            .generation
            .step_inputs(self.step, token)?
            .into_iter()
            .collect();
        let client = match &self.client_program {
            Some(g) => run_program(g, &raw, "client")?,
            None => HashMap::new(),
        };
        if let Some(g) = &self.public_program {
            for (name, tensor) in run_program(g, &raw, "public")? {
                self.tensors.insert(
                    TensorRef::Public(name),
                    tensor.to_f64().iter().copied().collect(),
                );
            }
        }
        let state_of: HashMap<&str, usize> = plan
            .states
            .iter()
            .enumerate()
            .map(|(i, s)| (s.input.as_str(), i))
            .collect();
        let mut inputs = Vec::with_capacity(plan.inputs.len());
        for io in &plan.inputs {
            if let Some(&s) = state_of.get(io.name.as_str()) {
                inputs.push(self.states[s].clone());
                continue;
            }
            let tensor = client
                .get(&io.name)
                .or_else(|| raw.get(&io.name))
                .ok_or_else(|| GenerationRunError::UnboundInput(io.name.clone()))?;
            let values: Vec<f64> = tensor.to_f64().iter().copied().collect();
            let slots = io
                .layout
                .encode(&values)
                .map_err(|e| GenerationRunError::Layout {
                    name: io.name.clone(),
                    message: e.to_string(),
                })?;
            let parts = slots
                .iter()
                .enumerate()
                .map(|(part, values)| {
                    self.backend.encrypt_at(values, io.level).map_err(|e| {
                        GenerationRunError::Backend {
                            what: format!("encrypting `{}` part {part}", io.name),
                            message: e.to_string(),
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            inputs.push(parts);
        }
        let vm = Vm::new(plan, &self.tensors)?;
        let execution = vm.run(self.backend, inputs)?;
        let mut outputs: HashMap<&str, Vec<B::Ciphertext>> = plan
            .outputs
            .iter()
            .map(|o| o.name.as_str())
            .zip(execution.outputs)
            .collect();
        let logits_io = plan
            .outputs
            .iter()
            .find(|o| o.name == self.generation.logits_output)
            .ok_or_else(|| {
                GenerationRunError::MissingOutput(self.generation.logits_output.clone())
            })?;
        let logits_parts = outputs
            .get(logits_io.name.as_str())
            .ok_or_else(|| GenerationRunError::MissingOutput(logits_io.name.clone()))?;
        let slots = logits_parts
            .iter()
            .map(|c| {
                self.backend
                    .decrypt(c)
                    .map_err(|e| GenerationRunError::Backend {
                        what: format!("decrypting `{}`", logits_io.name),
                        message: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let logits = logits_io
            .layout
            .decode(&slots)
            .map_err(|e| GenerationRunError::Layout {
                name: logits_io.name.clone(),
                message: e.to_string(),
            })?;
        let mut next = Vec::with_capacity(plan.states.len());
        for state in &plan.states {
            next.push(
                outputs
                    .remove(state.output.as_str())
                    .ok_or_else(|| GenerationRunError::MissingOutput(state.output.clone()))?,
            );
        }
        self.states = next;
        self.step += 1;
        Ok(StepOutput {
            logits,
            report: execution.report,
        })
    }
}

/// The encrypted input named `name`.
fn input<'p>(
    plan: &'p Plan,
    name: &str,
) -> Result<&'p cachemir_ir::plan::Ciphertexts, GenerationRunError> {
    plan.inputs
        .iter()
        .find(|io| io.name == name)
        .ok_or_else(|| GenerationRunError::UnboundInput(name.to_string()))
}

/// The index of the largest value (the first on ties): greedy decoding.
pub fn argmax(values: &[f64]) -> Option<usize> {
    values
        .iter()
        .enumerate()
        .fold(None, |best: Option<(usize, f64)>, (i, &v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((i, v)),
        })
        .map(|(i, _)| i)
}
