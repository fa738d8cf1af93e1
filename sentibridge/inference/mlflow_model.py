"""The file MLflow executes to build the served model ("models from code").

Logging the model as code means MLflow stores no pickled Python object; the sentibridge
package travels with the model through ``code_paths``. Only MLflow should import this file.
"""

from mlflow.models import set_model

from sentibridge.inference.serving import SentimentModel

set_model(SentimentModel())
